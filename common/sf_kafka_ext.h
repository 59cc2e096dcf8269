/*
 * sf_kafka_ext.h - additions to sf_kafka.h (kept apart only because
 * sf_kafka.h has another owner; merge into sf_kafka.h when convenient).
 */
#ifndef SF_KAFKA_EXT_H
#define SF_KAFKA_EXT_H

#include <stdint.h>

#include "sf_error.h"
#include "sf_kafka.h"

/*
 * sf_kafka_consumer_new() with a consumer-only session timeout:
 * session_timeout_ms > 0 sets librdkafka's session.timeout.ms (how long the
 * group coordinator waits before a silent member's partitions move to
 * another member; 45 s by default) and a heartbeat.interval.ms of a third of
 * it (at most 3 s); 0 = librdkafka's defaults. Applied after
 * opts->config_file, so it wins over the same key there. Producers are not
 * affected. Same ownership and errors as sf_kafka_consumer_new().
 */
sf_kafka_consumer *sf_kafka_consumer_new_ex(const sf_kafka_opts *opts, const char *group_id,
                                            const char *const *topics,
                                            int64_t session_timeout_ms, sf_error *err);

#endif
