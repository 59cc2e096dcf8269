/*
 * sf_keygen.h - private key generation, CSR building and CSR parsing
 * (OpenSSL 3 EVP APIs).
 *
 * Keys are OpenSSL EVP_PKEY objects: the caller owns what a function returns
 * through EVP_PKEY **out and releases it with EVP_PKEY_free().
 *
 * Conventions shared with sf_x509.h:
 *  - key algorithm names are "RSA" and "EC"; the size is the modulus bits
 *    for RSA (2048/3072/4096) and 256/384 for EC (P-256 / P-384);
 *  - "spki_sha256" is the SHA-256 of the DER SubjectPublicKeyInfo as 64
 *    lowercase hex characters, no separators: equal values mean the same
 *    public key (compare a certificate with a key or a CSR);
 *  - SAN lists hold DNS names and IP addresses as text, in the order found.
 *
 * Thread safety: all functions are reentrant.
 */
#ifndef SF_KEYGEN_H
#define SF_KEYGEN_H

#include <stddef.h>

#include <openssl/evp.h>

#include "sf_error.h"

#define SF_CSR_MAX_BYTES (32 * 1024)     /* PEM input larger than this: INVALID "csr" */
#define SF_CSR_MAX_SANS 100              /* SANs accepted in sf_csr_build / sf_csr_parse */
#define SF_NAME_MAX_LEN 253              /* a DNS name / CN longer than this is refused */
#define SF_SPKI_SHA256_HEX_LEN 64        /* buffers need +1 */

/*
 * Generate a key. alg "RSA" with size 2048, 3072 or 4096, or "EC" with size
 * 256 (P-256) or 384 (P-384); anything else => SF_ERR_INVALID (field
 * "key_algorithm" or "key_size"). RSA-4096 takes seconds of CPU.
 * On success *out is a new key the caller frees with EVP_PKEY_free().
 */
int sf_keygen_generate(const char *alg, int size, EVP_PKEY **out, sf_error *err);

/* Algorithm ("RSA"/"EC", static string) and size (bits, or 256/384 for EC)
 * of a key. Other key types => SF_ERR_INVALID (field "key"). */
int sf_key_describe(const EVP_PKEY *pkey, const char **alg, int *size, sf_error *err);

/* SHA-256 of the key's DER SubjectPublicKeyInfo, lowercase hex into
 * hex[SF_SPKI_SHA256_HEX_LEN + 1]. */
int sf_key_spki_sha256(const EVP_PKEY *pkey, char *hex, sf_error *err);

/*
 * Build a PEM CSR ("-----BEGIN CERTIFICATE REQUEST-----"): subject CN=cn,
 * a subjectAltName extension request with each SAN as a DNS name, or as an IP
 * address when it parses as IPv4/IPv6 text; signed with SHA-256. cn must be
 * non-empty; nsans may be 0 (sans may then be NULL). Names are checked for
 * length (SF_NAME_MAX_LEN) and printable ASCII (field "common_name" or
 * "subject_alt_names"). On success *csr_pem is a NUL-terminated string the
 * caller frees with free().
 */
int sf_csr_build(EVP_PKEY *pkey, const char *cn, const char *const *sans, size_t nsans,
                 char **csr_pem, sf_error *err);

/*
 * Private key as unencrypted PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"), the
 * form that is sealed with sf_seal. *pem is a NUL-terminated secret string:
 * release it with sf_secret_str_free() (sf_seal.h).
 */
int sf_key_to_pem(const EVP_PKEY *pkey, char **pem, sf_error *err);

/*
 * Parse an unencrypted private key PEM (PKCS#8 "PRIVATE KEY", or the
 * traditional "RSA PRIVATE KEY" / "EC PRIVATE KEY"); len bytes, need not be
 * NUL-terminated, at most 64 KiB. Encrypted keys and garbage =>
 * SF_ERR_INVALID (field "key"). On success *out is a key for EVP_PKEY_free().
 */
int sf_key_from_pem(const char *pem, size_t len, EVP_PKEY **out, sf_error *err);

/* What sf_csr_parse extracts. All strings NUL-terminated, owned by the info. */
typedef struct sf_csr_info {
    char *cn;               /* subject CN, "" when absent */
    char **sans;            /* DNS names and IP addresses (text), nsans entries */
    size_t nsans;
    char key_alg[8];        /* "RSA" or "EC" */
    int key_size;           /* bits for RSA, 256/384 for EC */
    unsigned char *spki_der;/* DER SubjectPublicKeyInfo */
    size_t spki_der_len;
    char spki_sha256[SF_SPKI_SHA256_HEX_LEN + 1];
} sf_csr_info;

/*
 * Parse and check a PEM CSR of len bytes (need not be NUL-terminated):
 * size limit SF_CSR_MAX_BYTES, exactly one CERTIFICATE REQUEST, the
 * signature must verify with the CSR's own key, the key must be RSA
 * 2048..8192 or EC P-256/P-384. Any failure => SF_ERR_INVALID, field "csr",
 * with a message saying what is wrong. On success *info is freed with
 * sf_csr_info_free().
 */
int sf_csr_parse(const char *pem, size_t len, sf_csr_info **info, sf_error *err);
void sf_csr_info_free(sf_csr_info *info);

#endif
