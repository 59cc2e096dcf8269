/* scm-sim: the simulator's own admin API under /__sim/ (no auth, JSON).
 * Runs with g_sim.mu held. */
#include "sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static cJSON *parse_body(const sim_req *r, sim_resp *resp)
{
    cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        resp_error(resp, 400, -1002, "body must be a JSON object");
        return NULL;
    }
    return j;
}

static void ok(sim_resp *resp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", true);
    resp_json(resp, 200, o);
}

static int id_from(const char *s, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || errno || *end || v <= 0)
        return -1;
    *out = v;
    return 0;
}

static void h_requests(sim_req *r, sim_resp *resp)
{
    const char *m = req_query(r, "method"), *pp = req_query(r, "path_prefix"),
               *since = req_query(r, "since"), *summary = req_query(r, "summary");
    unsigned long long since_seq = since ? strtoull(since, NULL, 10) : 0;
    bool sum = summary && strcmp(summary, "0") != 0;
    cJSON *arr = sum ? NULL : cJSON_CreateArray();
    cJSON *by = sum ? cJSON_CreateObject() : NULL;
    long total = 0;
    for (size_t i = 0; i < g_sim.rec_count; i++) {
        const sim_record *e = &g_sim.records[(g_sim.rec_head + i) % g_sim.rec_max];
        if (e->seq <= since_seq)
            continue;
        if (m && strcasecmp(m, e->method) != 0)
            continue;
        if (pp && strncmp(e->path, pp, strlen(pp)) != 0)
            continue;
        total++;
        if (sum) {
            char key[600];
            snprintf(key, sizeof key, "%s %s", e->method, e->path);
            cJSON *n = cJSON_GetObjectItemCaseSensitive(by, key);
            if (n)
                cJSON_SetNumberValue(n, n->valuedouble + 1);
            else
                cJSON_AddNumberToObject(by, key, 1);
            continue;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "seq", (double)e->seq);
        cJSON_AddNumberToObject(o, "time_ms", (double)e->time_ms);
        cJSON_AddStringToObject(o, "method", e->method);
        cJSON_AddStringToObject(o, "path", e->path ? e->path : "");
        cJSON_AddStringToObject(o, "query", e->query ? e->query : "");
        cJSON *h = e->headers ? cJSON_Parse(e->headers) : NULL;
        cJSON_AddItemToObject(o, "headers", h ? h : cJSON_CreateObject());
        cJSON_AddStringToObject(o, "body", e->body ? e->body : "");
        cJSON_AddNumberToObject(o, "status", e->status);
        cJSON_AddItemToArray(arr, o);
    }
    if (sum) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "total", (double)total);
        cJSON_AddItemToObject(o, "by_path", by);
        resp_json(resp, 200, o);
    } else {
        resp->total_count = total;
        resp_json(resp, 200, arr);
    }
}

static void h_enrollments(sim_req *r, sim_resp *resp)
{
    const char *pk = req_query(r, "pubkey_sha256"), *cm = req_query(r, "comment");
    cJSON *arr = cJSON_CreateArray();
    long n = 0;
    for (size_t i = 0; i < g_sim.nenrolls; i++) {
        const sim_enrollment *e = &g_sim.enrolls[i];
        if (pk && strcasecmp(pk, e->pub_sha256) != 0)
            continue;
        if (cm && (!e->comments || !strstr(e->comments, cm)))
            continue;
        n++;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "sslId", e->ssl_id);
        cJSON_AddStringToObject(o, "pubkey_sha256", e->pub_sha256);
        cJSON_AddStringToObject(o, "commonName", e->cn ? e->cn : "");
        if (e->comments)
            cJSON_AddStringToObject(o, "comments", e->comments);
        cJSON_AddStringToObject(o, "kind", e->kind);
        cJSON_AddItemToArray(arr, o);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", (double)n);
    cJSON_AddItemToObject(o, "enrollments", arr);
    resp_json(resp, 200, o);
}

static void h_state(sim_resp *resp)
{
    long per[ST__COUNT] = {0};
    for (size_t i = 0; i < g_sim.ncerts; i++)
        per[g_sim.certs[i]->status]++;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "certificates", (double)g_sim.ncerts);
    cJSON *by = cJSON_AddObjectToObject(o, "by_status");
    for (int i = 0; i < ST__COUNT; i++)
        if (per[i])
            cJSON_AddNumberToObject(by, sim_status_name(i), (double)per[i]);
    cJSON_AddNumberToObject(o, "organizations", cJSON_GetArraySize(g_sim.orgs));
    cJSON_AddNumberToObject(o, "domains", cJSON_GetArraySize(g_sim.domains));
    cJSON_AddNumberToObject(o, "profiles", cJSON_GetArraySize(g_sim.profiles));
    cJSON_AddNumberToObject(o, "requests", (double)g_sim.rec_count);
    cJSON_AddNumberToObject(o, "requests_total", (double)g_sim.rec_seq);
    cJSON_AddNumberToObject(o, "enrollments", (double)g_sim.nenrolls);
    cJSON_AddNumberToObject(o, "api_answered", (double)g_sim.timed_n);
    cJSON_AddNumberToObject(o, "api_answer_us_total", (double)g_sim.timed_answer_us);
    cJSON_AddNumberToObject(o, "api_sent_us_total", (double)g_sim.timed_done_us);
    cJSON_AddNumberToObject(o, "next_id", g_sim.next_id);
    cJSON_AddNumberToObject(o, "issue_after_polls", g_sim.issue_after_polls);
    cJSON_AddNumberToObject(o, "issue_delay_ms", (double)g_sim.issue_delay_ms);
    cJSON_AddBoolToObject(o, "manual_approval", g_sim.manual_approval);
    cJSON_AddNumberToObject(o, "pending_style", g_sim.pending_style);
    cJSON_AddStringToObject(o, "customerUri", g_sim.customer_uri ? g_sim.customer_uri : "");
    resp_json(resp, 200, o);
}

static void h_force_status(sim_req *r, sim_resp *resp, const char *ids)
{
    long id;
    sim_cert *c = id_from(ids, &id) == 0 && id < 2147483647L ? store_cert((int)id) : NULL;
    if (!c) {
        resp_error(resp, 404, -5101, "Certificate not found. Id: %s", ids);
        return;
    }
    cJSON *b = parse_body(r, resp);
    if (!b)
        return;
    int st = sim_status_parse(store_json_str(b, "status", NULL));
    cJSON_Delete(b);
    if (st < 0) {
        resp_error(resp, 400, -1601, "unknown status");
        return;
    }
    int64_t now = sim_now_s();
    switch (st) {
    case ST_ISSUED:
        if (!c->leaf || c->status != ST_ISSUED) {
            sim_leaf_free(c->leaf);
            c->leaf = NULL;
            free(c->serial);
            c->serial = NULL;
            c->t_issued = now;
            c->t_expires = now + (int64_t)c->term * 86400;
            if (!c->t_approved)
                c->t_approved = now;
            if (store_issue(c) != 0) {
                resp_error(resp, 500, -2, "could not issue");
                return;
            }
        }
        break;
    case ST_REQUESTED:
    case ST_APPROVED:
    case ST_APPLIED:
    case ST_SAAPPROVED:
        store_start_progress(c);
        break;
    case ST_REVOKED:
        if (!c->t_revoked)
            c->t_revoked = now;
        if (!c->serial) {
            c->t_issued = now;
            c->t_expires = now + (int64_t)c->term * 86400;
            store_issue(c);
        }
        break;
    case ST_DECLINED:
        c->t_declined = now;
        break;
    case ST_EXPIRED:
        if (!c->serial) {
            c->t_issued = now - (int64_t)c->term * 86400 - 86400;
            c->t_expires = now - 86400;
            store_issue(c);
        }
        break;
    default:
        break;
    }
    c->status = (uint8_t)st;
    ok(resp);
}

static void h_approve(sim_resp *resp, const char *ids)
{
    long id;
    sim_cert *c = id_from(ids, &id) == 0 && id < 2147483647L ? store_cert((int)id) : NULL;
    if (!c) {
        resp_error(resp, 404, -5101, "Certificate not found. Id: %s", ids);
        return;
    }
    if (c->status != ST_REQUESTED) {
        resp_error(resp, 400, -1112, "Certificate can't be approved cause it has state = %s",
                   sim_status_name(c->status));
        return;
    }
    c->status = ST_APPROVED;
    c->t_approved = sim_now_s();
    store_start_progress(c);
    if (g_sim.issue_delay_ms == 0 || (g_sim.issue_delay_ms < 0 && g_sim.issue_after_polls == 0))
        store_status_check(c);
    ok(resp);
}

static void h_config(sim_req *r, sim_resp *resp)
{
    cJSON *b = parse_body(r, resp);
    if (!b)
        return;
    const cJSON *v;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(b, "issue_after_polls")) && v->valueint >= 0)
        g_sim.issue_after_polls = v->valueint;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(b, "issue_delay_ms")))
        g_sim.issue_delay_ms = v->valuedouble < 0 ? -1 : v->valuedouble > 1e9 ? 1000000000L : (long)v->valuedouble;
    if (cJSON_IsBool(v = cJSON_GetObjectItemCaseSensitive(b, "manual_approval")))
        g_sim.manual_approval = cJSON_IsTrue(v);
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "pending_style"))) {
        char buf[32];
        if (cJSON_IsNumber(v))
            snprintf(buf, sizeof buf, "%d", v->valueint);
        else
            snprintf(buf, sizeof buf, "%s", cJSON_IsString(v) ? v->valuestring : "?");
        int ps = pending_style_parse(buf);
        if (ps < 0) {
            cJSON_Delete(b);
            resp_error(resp, 400, -1601, "unknown pending_style");
            return;
        }
        g_sim.pending_style = ps;
    }
    cJSON_Delete(b);
    h_state(resp);
}

void admin_handle(sim_req *r, sim_resp *resp)
{
    const char *p = r->sub; /* "/requests", ... */
    bool get = strcmp(r->method, "GET") == 0, post = strcmp(r->method, "POST") == 0,
         del = strcmp(r->method, "DELETE") == 0;
    char err[512] = "";

    if (strcmp(p, "/requests") == 0) {
        if (get)
            h_requests(r, resp);
        else if (del) {
            record_clear();
            ok(resp);
        } else
            goto method;
    } else if (strcmp(p, "/enrollments") == 0) {
        if (!get)
            goto method;
        h_enrollments(r, resp);
    } else if (strcmp(p, "/faults") == 0) {
        if (post) {
            cJSON *b = parse_body(r, resp);
            if (!b)
                return;
            int rc = faults_set(b, err, sizeof err);
            cJSON_Delete(b);
            if (rc) {
                resp_error(resp, 400, -1601, "%s", err[0] ? err : "bad faults");
                return;
            }
            ok(resp);
        } else if (del) {
            faults_clear();
            ok(resp);
        } else if (get) {
            resp_json(resp, 200, g_sim.faults_json ? cJSON_Duplicate(g_sim.faults_json, 1) : cJSON_CreateObject());
        } else
            goto method;
    } else if (strncmp(p, "/orders/", 8) == 0) {
        char ids[32];
        const char *slash = strchr(p + 8, '/');
        if (!slash || strcmp(slash, "/status") != 0 || (size_t)(slash - (p + 8)) >= sizeof ids) {
            resp_error(resp, 404, -1, "Not Found: %s", r->path);
            return;
        }
        if (!post)
            goto method;
        snprintf(ids, sizeof ids, "%.*s", (int)(slash - (p + 8)), p + 8);
        h_force_status(r, resp, ids);
    } else if (strncmp(p, "/approve/", 9) == 0) {
        if (!post)
            goto method;
        h_approve(resp, p + 9);
    } else if (strcmp(p, "/state") == 0) {
        if (!get)
            goto method;
        h_state(resp);
    } else if (strcmp(p, "/config") == 0) {
        if (post)
            h_config(r, resp);
        else if (get)
            h_state(resp);
        else
            goto method;
    } else if (strcmp(p, "/catalog") == 0) {
        if (!post)
            goto method;
        cJSON *b = parse_body(r, resp);
        if (!b)
            return;
        int rc = store_catalog_patch(b, err, sizeof err);
        cJSON_Delete(b);
        if (rc) {
            resp_error(resp, 400, -1601, "%s", err[0] ? err : "bad catalog patch");
            return;
        }
        ok(resp);
    } else if (strcmp(p, "/reset") == 0) {
        if (!post)
            goto method;
        faults_clear();
        record_clear();
        if (store_reset(err, sizeof err)) {
            resp_error(resp, 500, -2, "%s", err);
            return;
        }
        ok(resp);
    } else if (strcmp(p, "/ca/root.pem") == 0 || strcmp(p, "/ca/intermediate.pem") == 0) {
        const char *pem = strcmp(p, "/ca/root.pem") == 0 ? ca_root_pem() : ca_intermediate_pem();
        resp->status = 200;
        resp->body = strdup(pem);
        resp->body_len = resp->body ? strlen(resp->body) : 0;
        resp->ctype = "application/x-pem-file";
    } else {
        resp_error(resp, 404, -1, "Not Found: %s", r->path);
    }
    return;
method:
    resp_error(resp, 405, -1, "Request method '%s' not supported", r->method);
}
