/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * secd's certificate authority (GnuTLS): the CA key and certificate in the
 * state directory (key 0600), the server certificate for the endpoints
 * (renewed before it expires), client certificates issued from CSRs
 * (enrollment) or with a key made here (remote clients), revocation and the
 * CRL, and the refcounted TLS credentials the endpoints use, swapped on
 * reload or revocation without dropping established sessions.
 *
 * Certificate identity (docs/certificates.md), a URI SAN:
 *   local (enrollment):  secd://local/uid/<uid>/sha256/<64 hex>
 *   remote (Certs.Issue): secd://remote/<name>, name [A-Za-z0-9._-]{1,64}
 * Serials are 128-bit random, printed as 32 lower-case hex characters.
 */

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "db.h"
#include "macro.h"
#include "strutil.h"

#define CA_SERIAL_HEX_LEN 32
#define CA_REMOTE_NAME_MAX 64
/* Largest PEM CSR ca_issue_local() reads (an Ed25519 or P-256 request is < 1 KiB). */
#define CA_CSR_MAX (16u * 1024u)

typedef struct SecdCA SecdCA;

/* Server credentials for the TLS endpoints: refcounted, immutable once made. */
typedef struct TlsCredentials TlsCredentials;

TlsCredentials *tls_credentials_ref(TlsCredentials *t);
TlsCredentials *tls_credentials_unref(TlsCredentials *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(TlsCredentials *, tls_credentials_unref);
/* For gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, ...). Valid while referenced. */
gnutls_certificate_credentials_t tls_credentials_get(const TlsCredentials *t);

typedef struct CaSettings {
        uint64_t client_lifetime_usec;  /* enrollment certificates, default 1 h */
        uint64_t server_lifetime_usec;  /* default 30 d; renewed at 2/3 of its life */
        uint64_t ca_lifetime_usec;      /* default 10 y */
} CaSettings;

/*
 * Load the CA from state_dir (ca.key 0600, ca.crt), creating both on first
 * start, and make sure a valid server certificate exists. The store records
 * issued certificates and revocations.
 */
int ca_open(const char *state_dir, Db *db, const CaSettings *settings, SecdCA **ret);
SecdCA *ca_free(SecdCA *ca);
DEFINE_TRIVIAL_CLEANUP_FUNC(SecdCA *, ca_free);

/* The current server credentials (a new reference). */
int ca_credentials(SecdCA *ca, TlsCredentials **ret);

/* Renew the server certificate if it is past 2/3 of its life; 1 if renewed (new credentials). */
int ca_maybe_renew_server(SecdCA *ca);

/* PEM of the CA certificate(s) clients must trust (malloc'd). */
int ca_pem(SecdCA *ca, char **ret);

/*
 * Issue a local client certificate for the public key of a PEM CSR, after
 * checking its self-signature and key type. Records it in the store.
 * -EBADMSG malformed CSR, -EKEYREJECTED bad signature or key type.
 */
int ca_issue_local(SecdCA *ca, const char *csr_pem, size_t csr_len, uint32_t uid,
                   const uint8_t sha256[SHA256_DIGEST_LEN], char **ret_cert_pem,
                   uint64_t *ret_not_after_usec, char ret_serial[CA_SERIAL_HEX_LEN + 1]);

/*
 * Make a key pair and certificate for a remote client named name. The key
 * PEM is the caller's to wipe (erase_and_free). -EINVAL bad name.
 */
int ca_issue_remote(SecdCA *ca, const char *name, uint64_t validity_usec, char **ret_key_pem,
                    char **ret_cert_pem, uint64_t *ret_not_after_usec,
                    char ret_serial[CA_SERIAL_HEX_LEN + 1]);

/*
 * Revoke one serial (32 hex, either case): stored, added to the in-memory
 * set, the CRL and the credentials remade. 1 if newly revoked, 0 if it
 * already was; -ENOENT if never issued, -EINVAL if not a serial. Closing
 * live sessions is the caller's job (data_connections_revoked()).
 */
int ca_revoke(SecdCA *ca, const char *serial_hex);
/* 1 if revoked, 0 if not; fast (in-memory set). */
int ca_is_revoked(SecdCA *ca, const char *serial_hex);
/* The CRL, PEM (malloc'd). */
int ca_crl_pem(SecdCA *ca, char **ret);

/* name matches [A-Za-z0-9._-]{1,64}. */
bool ca_remote_name_is_valid(const char *name);

/* What a verified client certificate says about its holder. */
typedef struct CertIdentity {
        bool local;                             /* secd://local/... */
        uint32_t uid;                           /* local only */
        uint8_t sha256[SHA256_DIGEST_LEN];      /* local only */
        char name[CA_REMOTE_NAME_MAX + 1];      /* remote only */
        char serial[CA_SERIAL_HEX_LEN + 1];
        uint64_t not_after_usec;
} CertIdentity;

/*
 * Parse the identity of a client certificate (DER) that GnuTLS already
 * verified against the CA. -EBADMSG if it carries no valid secd URI SAN,
 * or more than one.
 */
int ca_cert_identity(const gnutls_datum_t *der, CertIdentity *ret);

/*
 * Changes every time new server credentials (CA, server certificate, CRL)
 * are made: verdicts remembered under older credentials (tls.c) are void.
 */
uint64_t ca_credentials_generation(void);
