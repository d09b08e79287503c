/* Record libmemcached's weighted ketama mapping, for lbkit's ketama preset tests.
 *
 * Reads a server list from argv ("host:port=weight" ...) and keys from stdin (one per line),
 * builds a memcached_st with MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED (which also selects the
 * consistent-ketama distribution and MD5 key hashing), and prints `key<TAB>host:port` for the
 * server libmemcached itself chooses. No server is contacted: the mapping is computed locally.
 *
 * Build: cc -O2 -o record-ketama scripts/record-ketama.c -lmemcached
 */
#include <libmemcached/memcached.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    memcached_st *memc = memcached_create(NULL);
    if (!memc) return 1;
    if (memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1) != MEMCACHED_SUCCESS) {
        fprintf(stderr, "cannot enable weighted ketama\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        char spec[512];
        snprintf(spec, sizeof spec, "%s", argv[i]);
        char *eq = strrchr(spec, '=');
        uint32_t weight = 1;
        if (eq) { *eq = 0; weight = (uint32_t)strtoul(eq + 1, NULL, 10); }
        char *colon = strrchr(spec, ':');
        in_port_t port = 11211;
        if (colon) { *colon = 0; port = (in_port_t)strtoul(colon + 1, NULL, 10); }
        if (memcached_server_add_with_weight(memc, spec, port, weight) != MEMCACHED_SUCCESS) {
            fprintf(stderr, "cannot add server %s\n", argv[i]);
            return 1;
        }
    }
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = 0;
        uint32_t idx = memcached_generate_hash(memc, line, len);
        const memcached_instance_st *server = memcached_server_instance_by_position(memc, idx);
        printf("%s\t%s:%u\n", line, memcached_server_name(server), (unsigned)memcached_server_port(server));
    }
    memcached_free(memc);
    return 0;
}
