/*
 * recon-reporter — exceptions with owners, the daily reconciliation and the dashboard.
 * The process life (configuration, connections, HTTP, signals) is service_main()'s.
 */
#include "service.h"

static const struct service_spec spec = {
    .name = "recon-reporter",
    .kafka = true,
    .postgres = true,
};

int main(int argc, char **argv)
{
    return service_main(&spec, NULL, argc, argv);
}
