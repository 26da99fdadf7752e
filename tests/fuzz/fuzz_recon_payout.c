/*
 * fuzz_recon_payout — recon-reporter's payout CSV parser (services/recon-reporter/payout.c) on
 * arbitrary bytes: it must return 0 or -EINVAL with a message, never read or write out of bounds,
 * and every parsed line must hold a known kind and a 3-letter currency. The module is included
 * directly: fuzz targets link tillsync_common, not recon_reporter_lib.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/recon-reporter/db.c"
#include "../../services/recon-reporter/payout.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct payout_file f;
    char err[256] = "";
    int rc = payout_parse(&f, (const char *)data, size, err, sizeof(err));

    if (rc != 0 && (rc != -EINVAL || !err[0]) && rc != -ENOMEM)
        abort();
    for (size_t i = 0; rc == 0 && i < f.n; i++)
        if (strlen(f.lines[i].currency) != 3 || !f.lines[i].order_id[0] ||
            (strcmp(f.lines[i].kind, "charge") && strcmp(f.lines[i].kind, "refund") &&
             strcmp(f.lines[i].kind, "fee") && strcmp(f.lines[i].kind, "adjustment")))
            abort();
    payout_file_release(&f);
    return 0;
}
