// LD_PRELOAD shim that gives wrk (Debian's 4.1.0) a TLS client certificate and turns off its
// session resumption. wrk has no option for either: it makes one SSL_CTX with
// SSL_CTX_new(TLS_client_method()) and no certificate, and its reconnect path (SSL_shutdown +
// SSL_clear on the same SSL object) keeps the previous session, so every `Connection: close`
// reconnect would resume instead of doing a full handshake.
//
// Built by bench/run.ts (gcc -shared -fPIC ... -lssl -lcrypto) into the run's temp folder and
// used as  LD_PRELOAD=<so> WRK_CLIENT_CERT=client.pem WRK_CLIENT_KEY=client-key.pem wrk ...
//
//   SSL_CTX_new  the real one, then the certificate chain and key from WRK_CLIENT_CERT /
//                WRK_CLIENT_KEY (exits when they don't load: never a silent run without mTLS)
//   SSL_connect  before a handshake starts, drops any session the SSL object still holds
//                (SSL_set_session(ssl, NULL)): every connection is a full handshake; when a
//                handshake completes, counts it, whether it was resumed, and its version+cipher
//   at exit      writes {"handshakes":N,"resumed":N,"tls":{"TLSv1.3 TLS_AES_256_GCM_SHA384":N},
//                "cpu_s":S} to the file named by WRK_TLS_STATS (when set); cpu_s is wrk's own
//                user+system CPU time (getrusage), so the bench can tell whether wrk was the limit
#define _GNU_SOURCE
#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static SSL_CTX *(*real_ctx_new)(const SSL_METHOD *);
static int (*real_connect)(SSL *);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long handshakes, resumed;
#define KINDS 8
static char kind_name[KINDS][96];
static unsigned long kind_count[KINDS];

static void die(const char *what, const char *file) {
  fprintf(stderr, "wrk-client-cert: %s %s\n", what, file ? file : "");
  ERR_print_errors_fp(stderr);
  exit(3);
}

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method) {
  if (!real_ctx_new) real_ctx_new = (SSL_CTX * (*)(const SSL_METHOD *)) dlsym(RTLD_NEXT, "SSL_CTX_new");
  SSL_CTX *ctx = real_ctx_new(method);
  if (!ctx) return ctx;
  const char *cert = getenv("WRK_CLIENT_CERT");
  const char *key = getenv("WRK_CLIENT_KEY");
  if (!cert || !key) die("WRK_CLIENT_CERT and WRK_CLIENT_KEY must be set", NULL);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) die("cannot load certificate", cert);
  if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) die("cannot load key", key);
  if (SSL_CTX_check_private_key(ctx) != 1) die("key does not match certificate", key);
  return ctx;
}

int SSL_connect(SSL *ssl) {
  if (!real_connect) real_connect = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
  if (SSL_in_before(ssl)) SSL_set_session(ssl, NULL);
  int r = real_connect(ssl);
  if (r == 1) {
    char name[96];
    snprintf(name, sizeof name, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
    pthread_mutex_lock(&lock);
    handshakes++;
    if (SSL_session_reused(ssl)) resumed++;
    for (int i = 0; i < KINDS; i++) {
      if (kind_name[i][0] == '\0') strcpy(kind_name[i], name);
      if (strcmp(kind_name[i], name) == 0) {
        kind_count[i]++;
        break;
      }
    }
    pthread_mutex_unlock(&lock);
  }
  return r;
}

__attribute__((destructor)) static void report(void) {
  const char *path = getenv("WRK_TLS_STATS");
  if (!path) return;
  FILE *f = fopen(path, "w");
  if (!f) return;
  fprintf(f, "{\"handshakes\":%lu,\"resumed\":%lu,\"tls\":{", handshakes, resumed);
  for (int i = 0; i < KINDS && kind_name[i][0]; i++) fprintf(f, "%s\"%s\":%lu", i ? "," : "", kind_name[i], kind_count[i]);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  fprintf(f, "},\"cpu_s\":%.4f}\n", cpu);
  fclose(f);
}
