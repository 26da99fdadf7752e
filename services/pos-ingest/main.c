/*
 * pos-ingest — the tills' HTTP door: sales, returns, stock movements and offline backlogs into
 * Kafka. The process life (configuration, connections, HTTP, signals) is service_main()'s.
 */
#include "service.h"

static const struct service_spec spec = {
    .name = "pos-ingest",
    .kafka = true,
};

int main(int argc, char **argv)
{
    return service_main(&spec, NULL, argc, argv);
}
