/*
 * recon-reporter — exceptions with owners, the daily reconciliation and the dashboard.
 * The process life (configuration, connections, HTTP, signals) is service_main()'s; the parts
 * are in recon.c (consumer, checker), api.c (HTTP, dashboard) and the modules they use.
 */
#include <stdlib.h>

#include "recon.h"

static const struct config_var vars[] = {
    {"RECON_GROUP_ID", CONFIG_STR, false, "recon-reporter", 0, 0,
     "Kafka consumer group of recon-reporter (offsets are kept in Postgres)",
     &recon_config.group_id},
    {"RECON_CHECK_INTERVAL_MS", CONFIG_INT, false, "30000", 100, 3600000,
     "How often the own checks run and consumer lag is measured", &recon_config.check_interval_ms},
    {"RECON_APPLY_DEADLINE_S", CONFIG_INT, false, "300", 1, 604800,
     "Seconds a POS transaction or online order may take to show in stock (and a takings "
     "declaration waits for late tenders) before an exception",
     &recon_config.apply_deadline_s},
    {"RECON_TAKINGS_TOLERANCE", CONFIG_INT, false, "0", 0, 100000000,
     "Minor units of takings variance accepted per tender group before an exception",
     &recon_config.takings_tolerance},
    {"RECON_SKU_SIDE_GRACE_S", CONFIG_INT, false, "604800", 0, 31536000,
     "Seconds a tracked SKU may be in a shop catalogue without any till sale or store movement "
     "before it is reported as known online only (sku_one_side_only)",
     &recon_config.sku_side_grace_s},
    {"RECON_KAFKA_SESSION_TIMEOUT_MS", CONFIG_INT, false, "45000", 1000, 300000,
     "Consumer group session timeout (heartbeats every twelfth of it)",
     &recon_config.session_timeout_ms},
};

static const struct service_spec spec = {
    .name = "recon-reporter",
    .migrations_dir = TILLSYNC_MIGRATIONS_DIR,
    .kafka = true,
    .postgres = true,
    .extra = vars,
    .nextra = sizeof(vars) / sizeof(vars[0]),
};

int main(int argc, char **argv)
{
    return service_main(&spec, &recon_hooks, argc, argv);
}
