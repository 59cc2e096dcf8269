#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "simctl.h"
#include "sf_util.h"

static void nap_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int sim_start(simproc *s, const char *const *extra)
{
    const char *bin = getenv("SCM_SIM"), *seed = getenv("SCM_SIM_SEED");
    char portfile[300], log[300];
    const char *argv[32];
    int n = 0;
    int64_t deadline;

    memset(s, 0, sizeof(*s));
    if (bin == NULL || seed == NULL) {
        fprintf(stderr, "simctl: SCM_SIM and SCM_SIM_SEED must be set\n");
        return -1;
    }
    (void)sf_snprintf(s->dir, sizeof(s->dir), "/tmp/scmclient-sim-XXXXXX");
    if (mkdtemp(s->dir) == NULL) {
        fprintf(stderr, "simctl: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    (void)sf_snprintf(portfile, sizeof(portfile), "%s/port", s->dir);
    (void)sf_snprintf(log, sizeof(log), "%s/sim.log", s->dir);
    argv[n++] = bin;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--port-file";
    argv[n++] = portfile;
    argv[n++] = "--seed";
    argv[n++] = seed;
    argv[n++] = "--quiet";
    for (int i = 0; extra && extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    s->pid = fork();
    if (s->pid < 0)
        return -1;
    if (s->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    deadline = sf_now_mono_ms() + 15000;
    while (sf_now_mono_ms() < deadline) {
        char *txt = NULL;
        size_t len;
        int64_t port;
        int st;

        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            fprintf(stderr, "simctl: scm-sim exited early (see %s)\n", log);
            s->pid = 0;
            return -1;
        }
        if (sf_read_file(portfile, 64, &txt, &len) == 0) {
            while (len > 0 && (txt[len - 1] == '\n' || txt[len - 1] == ' '))
                txt[--len] = '\0';
            if (sf_str_to_i64(txt, 1, 65535, &port) == 0) {
                free(txt);
                s->port = (int)port;
                (void)sf_snprintf(s->root, sizeof(s->root), "http://127.0.0.1:%d", s->port);
                (void)sf_snprintf(s->base, sizeof(s->base), "%s/api", s->root);
                return 0;
            }
            free(txt);
        }
        nap_ms(20);
    }
    fprintf(stderr, "simctl: scm-sim did not write its port within 15 s\n");
    sim_stop(s);
    return -1;
}

void sim_stop(simproc *s)
{
    char path[300];

    if (s->pid > 0) {
        int64_t deadline = sf_now_mono_ms() + 5000;
        int st;

        kill(s->pid, SIGTERM);
        while (waitpid(s->pid, &st, WNOHANG) == 0) {
            if (sf_now_mono_ms() > deadline) {
                kill(s->pid, SIGKILL);
                waitpid(s->pid, &st, 0);
                break;
            }
            nap_ms(20);
        }
        s->pid = 0;
    }
    if (s->dir[0]) {
        (void)sf_snprintf(path, sizeof(path), "%s/port", s->dir);
        unlink(path);
        (void)sf_snprintf(path, sizeof(path), "%s/sim.log", s->dir);
        if (getenv("SIMCTL_KEEP_LOG") == NULL)
            unlink(path);
        rmdir(s->dir);
        s->dir[0] = '\0';
    }
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    return sf_buf_append(ud, p, sz * n) < 0 ? 0 : sz * n;
}

long sim_admin(const simproc *s, const char *method, const char *path, const char *json,
               char **out)
{
    CURL *e = curl_easy_init();
    char url[512];
    struct curl_slist *h = NULL;
    sf_buf b;
    long status = -1;

    if (e == NULL)
        return -1;
    sf_buf_init(&b, 64 << 20);
    (void)sf_snprintf(url, sizeof(url), "%s%s", s->root, path);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    if (json)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, json);
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    if (out && status > 0) {
        if (b.data == NULL)
            (void)sf_buf_append(&b, "", 0);
        *out = sf_buf_detach(&b, NULL);
    }
    sf_buf_release(&b);
    return status;
}
