/*
 * loyalty-sync — member points awarded and reversed after the fact, conflict-safe.
 * The process life (configuration, connections, HTTP, signals) is service_main()'s.
 */
#include "service.h"

static const struct service_spec spec = {
    .name = "loyalty-sync",
    .kafka = true,
    .redis = true,
};

int main(int argc, char **argv)
{
    return service_main(&spec, NULL, argc, argv);
}
