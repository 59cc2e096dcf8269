/*
 * sf_x509.h - certificate chains as SCM delivers them: parsing with hard
 * limits, ordering leaf -> intermediates -> root, signature checks, and the
 * facts the repository stores about a certificate.
 *
 * Accepted input to sf_chain_parse (detected from the bytes):
 *  - a PEM bundle with one or more "CERTIFICATE" blocks in any order (text
 *    outside the blocks is ignored; other PEM block types are refused);
 *  - PKCS#7 (signedData certificates) as PEM ("PKCS7"), DER, or bare base64
 *    of the DER without PEM lines (SCM's collect format "base64");
 *  - a single DER certificate (or bare base64 of one).
 * Limits: SF_CHAIN_MAX_BYTES input, SF_CHAIN_MAX_CERTS certificates, and per
 * certificate at most SF_CERT_MAX_SAN_NAMES SAN entries and
 * SF_CERT_MAX_SAN_BYTES bytes of subjectAltName extension. Violations are
 * SF_ERR_INVALID with field "certificate" and a message naming the limit.
 *
 * Conventions (shared with sf_keygen.h): fingerprints are colon-separated
 * upper-case hex ("AB:CD:..."); spki_sha256 is 64 lowercase hex characters;
 * SAN lists hold DNS names and IP addresses as text.
 *
 * Thread safety: a chain is not shared between threads while being ordered;
 * read-only accessors are safe concurrently.
 */
#ifndef SF_X509_H
#define SF_X509_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sf_error.h"

#define SF_CHAIN_MAX_BYTES (1024 * 1024)
#define SF_CHAIN_MAX_CERTS 10
#define SF_CERT_MAX_SAN_NAMES 1000
#define SF_CERT_MAX_SAN_BYTES (64 * 1024)

typedef struct sf_chain sf_chain;

/*
 * Parse len bytes of certificates in any accepted form (see above). The
 * result keeps the input order until sf_chain_order is called. On success
 * *out is freed with sf_chain_free(). Empty input, garbage, truncated PEM or
 * DER, and limit violations => SF_ERR_INVALID (field "certificate").
 */
int sf_chain_parse(const void *data, size_t len, sf_chain **out, sf_error *err);

/* A chain from certificates the caller already holds (each is up-ref'd, the
 * caller keeps its references). Same limits as sf_chain_parse. */
int sf_chain_from_certs(X509 *const *certs, size_t n, sf_chain **out, sf_error *err);

void sf_chain_free(sf_chain *chain);

/*
 * Order the chain in place: leaf first (the one certificate that issues no
 * other certificate in the set), then each issuer, ending with a self-signed
 * root when present or with the last intermediate. Every certificate must be
 * signed by the next (issuer name == next subject name, and the signature
 * verifies with the next certificate's public key); the set must form exactly
 * one path with no extra or duplicate certificates, except that an
 * alternate of a path certificate (same subject and public key, e.g. the
 * self-signed twin of a cross-signed CA) is dropped from the chain and the
 * cross-signed one is followed. Failure =>
 * SF_ERR_INVALID (field "certificate") and the order is left unchanged.
 * A self-signed root's own signature is verified too.
 */
int sf_chain_order(sf_chain *chain, sf_error *err);

/* True after a successful sf_chain_order when the chain has more than one
 * certificate and the last is a self-signed root (a lone self-signed
 * certificate counts as a leaf, not a root). */
bool sf_chain_has_root(const sf_chain *chain);
size_t sf_chain_count(const sf_chain *chain);
/* The i-th certificate (borrowed, valid until sf_chain_free), NULL if out of
 * range. After sf_chain_order, index 0 is the leaf. */
X509 *sf_chain_cert(const sf_chain *chain, size_t i);

/*
 * The certificates as concatenated PEM in the current order. When
 * include_root is false a trailing self-signed root is left out. *pem is a
 * NUL-terminated string of *len bytes (len may be NULL) freed with free().
 */
int sf_chain_to_pem(const sf_chain *chain, bool include_root, char **pem, size_t *len,
                    sf_error *err);

/* Facts about one certificate. Strings NUL-terminated, owned by the info. */
typedef struct sf_cert_info {
    char sha256_fp[96];      /* "AB:CD:..." (32 bytes -> 95 chars) */
    char sha1_fp[60];        /* 20 bytes -> 59 chars */
    char *serial_hex;        /* upper-case hex, no separators, no leading 0x */
    char *issuer;            /* RFC 2253 */
    char *subject;           /* RFC 2253 */
    int64_t not_before;      /* epoch seconds */
    int64_t not_after;       /* epoch seconds */
    char key_alg[8];         /* "RSA" or "EC" ("" for other types) */
    int key_size;            /* bits for RSA, 256/384 for EC, 0 if unknown */
    char *cn;                /* subject CN, "" when absent */
    char **sans;             /* DNS names and IP addresses, nsans entries */
    size_t nsans;
    char spki_sha256[65];    /* lowercase hex of SHA-256(SubjectPublicKeyInfo DER) */
    bool self_signed;        /* subject == issuer and the signature verifies */
} sf_cert_info;

/* Extract the facts; SAN limits apply. *out is freed with sf_cert_info_free. */
int sf_cert_info_get(X509 *cert, sf_cert_info **out, sf_error *err);
void sf_cert_info_free(sf_cert_info *info);

/*
 * 0 when the certificate's public key is the public half of pkey; otherwise
 * -1 with SF_ERR_INVALID (field "certificate", "certificate does not match
 * the private key").
 */
int sf_cert_matches_key(X509 *cert, const EVP_PKEY *pkey, sf_error *err);

/*
 * 0 when info's CN equals cn and its SAN set equals the given set
 * (case-insensitive, order-free, duplicates ignored); otherwise -1 with
 * SF_ERR_INVALID (field "common_name" or "subject_alt_names") naming a
 * difference. cn NULL skips the CN comparison.
 */
int sf_cert_names_match(const sf_cert_info *info, const char *cn, const char *const *sans,
                        size_t nsans, sf_error *err);

/* One certificate as PEM; *pem freed with free(). */
int sf_cert_to_pem(X509 *cert, char **pem, sf_error *err);

#endif
