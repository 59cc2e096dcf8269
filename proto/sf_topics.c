/*
 * sf_topics.c - topic names (see sf_topics.h).
 */
#include <string.h>

#include "sf_topics.h"
#include "sf_util.h"

/* Kafka's legal topic name: 1..249 characters of [A-Za-z0-9._-]. */
static int topic_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

int sf_topic_name(const char *prefix, const char *suffix, char *buf, size_t n)
{
    size_t pl, sl;

    if (prefix == NULL)
        prefix = SF_TOPIC_DEFAULT_PREFIX;
    if (suffix == NULL || suffix[0] == '\0' || buf == NULL)
        return -1;
    pl = strlen(prefix);
    sl = strlen(suffix);
    if (pl + sl > 249 || pl + sl + 1 > n)
        return -1;
    for (size_t i = 0; i < pl; i++)
        if (!topic_char_ok(prefix[i]))
            return -1;
    for (size_t i = 0; i < sl; i++)
        if (!topic_char_ok(suffix[i]))
            return -1;
    memcpy(buf, prefix, pl);
    memcpy(buf + pl, suffix, sl);
    buf[pl + sl] = '\0';
    return 0;
}

const char *sf_topic_for_type(const char *type)
{
    static const struct {
        const char *type;
        const char *topic;
    } map[] = {
        {SF_CMD_CATALOG_SYNC, SF_TOPIC_CATALOG_COMMANDS},
        {SF_CMD_ORDERS_IMPORT, SF_TOPIC_CATALOG_COMMANDS},
        {SF_CMD_ORDER_ENROLL, SF_TOPIC_ORDER_COMMANDS},
        {SF_CMD_ORDER_RENEW, SF_TOPIC_ORDER_COMMANDS},
        {SF_CMD_ORDER_REISSUE, SF_TOPIC_ORDER_COMMANDS},
        {SF_CMD_ORDER_REVOKE, SF_TOPIC_ORDER_COMMANDS},
        {SF_CMD_ORDER_DELETE, SF_TOPIC_ORDER_COMMANDS},
        {SF_CMD_ORDER_CHECK_STATUS, SF_TOPIC_STATUS_COMMANDS},
        {SF_MSG_CERT_COLLECTED, SF_TOPIC_CERTS_COLLECTED},
        {SF_EV_CATALOG_SYNCED, SF_TOPIC_EVENTS},
        {SF_EV_CATALOG_SYNC_FAILED, SF_TOPIC_EVENTS},
        {SF_EV_CATALOG_SYNC_PROGRESS, SF_TOPIC_EVENTS},
        {SF_EV_ORDERS_IMPORTED, SF_TOPIC_EVENTS},
        {SF_EV_ORDERS_IMPORT_PROGRESS, SF_TOPIC_EVENTS},
        {SF_EV_ORDER_ACCEPTED, SF_TOPIC_EVENTS},
        {SF_EV_ORDER_REJECTED, SF_TOPIC_EVENTS},
        {SF_EV_ORDER_SUBMITTED, SF_TOPIC_EVENTS},
        {SF_EV_ORDER_STATUS_CHANGED, SF_TOPIC_EVENTS},
        {SF_EV_ORDER_ISSUED, SF_TOPIC_EVENTS},
        {SF_EV_ORDER_FAILED, SF_TOPIC_EVENTS},
        {SF_EV_ORDER_RENEWED, SF_TOPIC_EVENTS},
        {SF_EV_ORDER_REISSUED, SF_TOPIC_EVENTS},
        {SF_EV_ORDER_REVOKED, SF_TOPIC_EVENTS},
        {SF_EV_ORDER_DELETED, SF_TOPIC_EVENTS},
        {SF_EV_CERT_STORED, SF_TOPIC_EVENTS},
        {SF_EV_CERT_NOT_STORED, SF_TOPIC_EVENTS},
        {SF_EV_CERT_REJECTED, SF_TOPIC_EVENTS},
    };

    if (type == NULL)
        return NULL;
    for (size_t i = 0; i < SF_ARRAY_LEN(map); i++)
        if (strcmp(map[i].type, type) == 0)
            return map[i].topic;
    return NULL;
}
