/*
 * sf_seal.h - sealing of secrets at rest (SCM credentials, private keys,
 * keystore passwords) with AES-256-GCM under a master key.
 *
 * A sealed value is a self-describing ASCII token
 *
 *     v1.<keyid>.<base64(nonce[12] | ciphertext | tag[16])>
 *
 * where <keyid> is the first 8 lowercase hex characters of SHA-256(master
 * key): stable for a given key, so a token names the key that sealed it and
 * the master key can be rotated (add the new key as primary, keep the old one
 * for unsealing, re-seal, then drop the old key). The caller's context
 * string (aad, e.g. "order:123:key") is authenticated but not stored: a
 * token copied to another row does not unseal there.
 *
 * Key bytes and plaintext never appear in error messages.
 *
 * Thread safety: configure a sealer (new/add/set_primary) from one thread;
 * afterwards sf_seal/sf_unseal may be called concurrently.
 */
#ifndef SF_SEAL_H
#define SF_SEAL_H

#include <stdbool.h>
#include <stddef.h>

#include "sf_config.h"
#include "sf_error.h"

#define SF_SEAL_KEY_LEN 32
#define SF_SEAL_KEY_ID_LEN 8              /* hex characters, buffer needs +1 */
#define SF_SEAL_MAX_PLAINTEXT (1024 * 1024) /* larger input is SF_ERR_INVALID */
#define SF_SEAL_MAX_KEYS 16
#define SF_SEAL_MAX_AAD 1024

typedef struct sf_sealer sf_sealer;

/* A sealer with no keys. NULL (err set) on allocation failure. */
sf_sealer *sf_sealer_new(sf_error *err);
/* Wipes the key material. Accepts NULL. */
void sf_sealer_free(sf_sealer *s);

/*
 * Add a master key from a file holding exactly 32 raw bytes, or 64 hex
 * characters optionally followed by one newline ("\n" or "\r\n"). The first
 * key added becomes the primary (sealing) key; later keys only unseal unless
 * made primary with sf_sealer_set_primary. Adding a key already present is a
 * no-op. Errors: unreadable file (SF_ERR_FATAL), bad format (SF_ERR_INVALID,
 * field "master_key"), too many keys (SF_ERR_INVALID).
 */
int sf_sealer_add_key_file(sf_sealer *s, const char *path, sf_error *err);
/* Same with the 32 key bytes in memory (copied; the caller wipes its copy). */
int sf_sealer_add_key(sf_sealer *s, const unsigned char key[SF_SEAL_KEY_LEN], sf_error *err);
/* The key id of 32 key bytes (buf: SF_SEAL_KEY_ID_LEN + 1 bytes). */
void sf_seal_compute_key_id(const unsigned char key[SF_SEAL_KEY_LEN], char *buf);
/* Make the key with this id the sealing key. SF_ERR_NOT_FOUND if unknown. */
int sf_sealer_set_primary(sf_sealer *s, const char *key_id, sf_error *err);
/* Id of the primary key, or NULL when the sealer has no key. Owned by s. */
const char *sf_sealer_primary_id(const sf_sealer *s);

/*
 * The sealer every binary uses, from its settings:
 *   SCMFLOW_MASTER_KEY_FILE       required; the primary (sealing) key
 *   SCMFLOW_MASTER_KEY_OLD_FILES  optional, comma-separated paths of older
 *                                 keys, added after the primary: they only
 *                                 unseal (rotation, see README "Operations").
 *                                 Blanks around a path and empty entries are
 *                                 ignored.
 * Errors: an empty SCMFLOW_MASTER_KEY_FILE is SF_ERR_INVALID with field
 * "SCMFLOW_MASTER_KEY_FILE"; a key that cannot be loaded keeps the class of
 * sf_sealer_add_key_file (unreadable = SF_ERR_FATAL, bad format or id
 * collision = SF_ERR_INVALID) with field "SCMFLOW_MASTER_KEY_FILE" or
 * "SCMFLOW_MASTER_KEY_OLD_FILES" and, for an old key, its 1-based position
 * in the list; messages name paths, never key bytes. Logs nothing (file
 * modes are the caller's business: sf_seal_check_key_file_mode).
 * Returns a sealer the caller frees with sf_sealer_free, or NULL.
 */
sf_sealer *sf_sealer_from_config(const sf_config *cfg, sf_error *err);

/*
 * Report whether a master key file is readable or writable by group/other.
 * Returns 0 when the mode is private (0600/0400 style), 1 when too open (err
 * carries a message the caller may log as a warning), -1 when stat failed.
 * The library does not refuse such files: deployment decides.
 */
int sf_seal_check_key_file_mode(const char *path, sf_error *err);

/*
 * Seal len bytes of plain under the primary key, binding aad (a NUL-terminated
 * context string, may be "" but not NULL, at most SF_SEAL_MAX_AAD bytes).
 * On success *out_text is a NUL-terminated token the caller frees with free()
 * (the token is not secret). A fresh random nonce is used on every call.
 */
int sf_seal(const sf_sealer *s, const void *plain, size_t len, const char *aad, char **out_text,
            sf_error *err);

/*
 * Unseal a token with the key it names and the same aad. On success *plain is
 * a heap buffer of *len bytes plus a NUL terminator (not counted), to be
 * released with sf_secret_free(*plain, *len). Unknown key id =>
 * SF_ERR_NOT_FOUND; malformed token => SF_ERR_INVALID (field "sealed");
 * authentication failure (wrong key, wrong aad, tampered token) =>
 * SF_ERR_INVALID (field "sealed"). Never any partial output.
 */
int sf_unseal(const sf_sealer *s, const char *token, const char *aad, unsigned char **plain,
              size_t *len, sf_error *err);

/* Copy the key id of a token into buf (SF_SEAL_KEY_ID_LEN + 1 bytes).
 * Returns 0, or -1 when token is not a v1 token. */
int sf_seal_key_id(const char *token, char *buf);

/* True when the token was sealed with a key other than the primary (a
 * candidate for re-sealing after rotation). False for malformed tokens. */
bool sf_seal_needs_reseal(const sf_sealer *s, const char *token);

/* Zero then free a secret buffer of len bytes. Accepts NULL. */
void sf_secret_free(void *p, size_t len);
/* Zero then free a NUL-terminated secret string. Accepts NULL. */
void sf_secret_str_free(char *s);

#endif
