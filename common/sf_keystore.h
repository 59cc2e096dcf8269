/*
 * sf_keystore.h - keystores built from a private key and an ordered chain
 * (sf_chain after sf_chain_order: leaf first):
 *
 *  - PEM: private key, then the leaf, then the rest of the chain, as
 *    concatenated PEM. The key is unencrypted PKCS#8, or encrypted PKCS#8
 *    (PBES2: AES-256-CBC, PBKDF2/HMAC-SHA-256) when a password is given.
 *  - PKCS12: PKCS12_create with AES-256-CBC + PBKDF2/SHA-256 for both the key
 *    and the certificate bags, MAC SHA-256, SF_KEYSTORE_PBE_ITER iterations;
 *    the alias is the friendly name of the key and leaf. Opens with
 *    `openssl pkcs12` and Java 17 keytool.
 *  - JKS: Sun's JKS format (version 2) with one PrivateKeyEntry protected by
 *    Sun's key protector, written directly (no library exists).
 *
 * Passwords: printable ASCII (0x20..0x7E), SF_KEYSTORE_PASSWORD_MIN..MAX
 * characters, required for PKCS12 and JKS, optional for PEM. keytool refuses
 * store passwords under 6 characters, and Java's PKCS#12 refuses non-ASCII
 * passwords ("Password is not ASCII"), so a store we write could not be
 * opened by Java with anything else. The same password protects the store and the key. Aliases: 1..64
 * characters of [A-Za-z0-9._-]; NULL means SF_KEYSTORE_DEFAULT_ALIAS. JKS
 * stores the alias lower-cased (as Java does).
 * Bad password or alias => SF_ERR_INVALID (field "keystore_password" or
 * "alias"); a key that does not match the leaf => SF_ERR_INVALID (field
 * "certificate"). The password never appears in an error.
 *
 * Output buffers hold key material: release them with sf_secret_free(buf,
 * len) (sf_seal.h).
 *
 * Thread safety: all functions are reentrant.
 */
#ifndef SF_KEYSTORE_H
#define SF_KEYSTORE_H

#include <stddef.h>

#include <openssl/evp.h>

#include "sf_error.h"
#include "sf_x509.h"

#define SF_KEYSTORE_PASSWORD_MIN 6
#define SF_KEYSTORE_PASSWORD_MAX 128
#define SF_KEYSTORE_DEFAULT_ALIAS "scmflow"
#define SF_KEYSTORE_PBE_ITER 10000
#define SF_KEYSTORE_MAX_BYTES (2 * 1024 * 1024) /* parse input limit */

typedef enum sf_keystore_type {
    SF_KEYSTORE_PEM = 0,
    SF_KEYSTORE_PKCS12,
    SF_KEYSTORE_JKS,
} sf_keystore_type;

/* "PEM" | "PKCS12" | "JKS" (case-insensitive; "P12" and "PFX" accepted for
 * PKCS12). Returns 0, or -1 for anything else. */
int sf_keystore_type_parse(const char *s, sf_keystore_type *out);
/* "PEM" / "PKCS12" / "JKS". */
const char *sf_keystore_type_name(sf_keystore_type t);
/* File extension without dot: "pem" / "p12" / "jks". */
const char *sf_keystore_file_ext(sf_keystore_type t);

/* Check a password against the rules above (password NULL => error). */
int sf_keystore_check_password(const char *password, sf_error *err);

/*
 * Build a keystore of the given type. chain must hold at least the leaf
 * (index 0) and should be ordered; key must match the leaf. password may be
 * NULL only for PEM. On success *out (*out_len bytes; PEM output is also
 * NUL-terminated) is released with sf_secret_free(*out, *out_len).
 */
int sf_keystore_build(sf_keystore_type type, const EVP_PKEY *key, const sf_chain *chain,
                      const char *password, const char *alias, unsigned char **out,
                      size_t *out_len, sf_error *err);

/* The three builders behind sf_keystore_build (same contract). */
int sf_keystore_pem(const EVP_PKEY *key, const sf_chain *chain, const char *password,
                    unsigned char **out, size_t *out_len, sf_error *err);
int sf_keystore_pkcs12(const EVP_PKEY *key, const sf_chain *chain, const char *password,
                       const char *alias, unsigned char **out, size_t *out_len, sf_error *err);
int sf_keystore_jks(const EVP_PKEY *key, const sf_chain *chain, const char *password,
                    const char *alias, unsigned char **out, size_t *out_len, sf_error *err);

/*
 * Open a PKCS#12 file (at most SF_KEYSTORE_MAX_BYTES): verifies the MAC with
 * password, returns the private key and the certificates (leaf first when
 * the chain orders; otherwise in file order). Wrong password =>
 * SF_ERR_AUTH; garbage => SF_ERR_INVALID (field "keystore"). key and chain
 * may each be NULL when not wanted.
 */
int sf_keystore_parse_pkcs12(const void *der, size_t len, const char *password, EVP_PKEY **key,
                             sf_chain **chain, sf_error *err);

/*
 * Open a JKS file written by sf_keystore_jks (or keytool) with one
 * PrivateKeyEntry: checks the integrity digest and the key protector's check
 * digest with password, returns the key and chain. Wrong password =>
 * SF_ERR_AUTH; malformed => SF_ERR_INVALID (field "keystore").
 */
int sf_keystore_parse_jks(const void *data, size_t len, const char *password, EVP_PKEY **key,
                          sf_chain **chain, sf_error *err);

#endif
