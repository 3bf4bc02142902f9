/* Private to transports/: OpenSSL, loaded the first time something needs it. No binary links
 * libssl or libcrypto: a program that never opens a TLS connection or proves a password never
 * loads them. Every function of OpenSSL that rdq calls is in one of the two lists below and is
 * called through OSSL(name); its pointer has the header's own type. Functions that the headers
 * wrap in macros are called directly with the macros' constants (SSL_CTX_ctrl for
 * SSL_CTX_set_min_proto_version, OPENSSL_sk_num for sk_X509_num, ...). */
#ifndef RDQ_TRANSPORTS_OSSL_H
#define RDQ_TRANSPORTS_OSSL_H

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stddef.h>

/* libcrypto: HMAC for passwords, and certificates, keys and BIOs for TLS */
#define RDT_OSSL_CRYPTO(X)                                                                         \
    X(HMAC)                                                                                        \
    X(EVP_sha256)                                                                                  \
    X(EVP_sha1)                                                                                    \
    X(EVP_PKEY_free)                                                                               \
    X(ERR_get_error)                                                                               \
    X(ERR_peek_error)                                                                              \
    X(ERR_error_string_n)                                                                          \
    X(ERR_reason_error_string)                                                                     \
    X(ERR_clear_error)                                                                             \
    X(BIO_meth_new)                                                                                \
    X(BIO_get_new_index)                                                                           \
    X(BIO_meth_set_write_ex)                                                                       \
    X(BIO_meth_set_read_ex)                                                                        \
    X(BIO_meth_set_ctrl)                                                                           \
    X(BIO_new)                                                                                     \
    X(BIO_new_file)                                                                                \
    X(BIO_free)                                                                                    \
    X(BIO_set_data)                                                                                \
    X(BIO_get_data)                                                                                \
    X(BIO_set_init)                                                                                \
    X(BIO_set_flags)                                                                               \
    X(BIO_clear_flags)                                                                             \
    X(PEM_read_bio_X509)                                                                           \
    X(PEM_read_bio_PrivateKey)                                                                     \
    X(X509_free)                                                                                   \
    X(X509_up_ref)                                                                                 \
    X(ASN1_TIME_to_tm)                                                                             \
    X(X509_digest)                                                                                 \
    X(X509_get_subject_name)                                                                       \
    X(X509_NAME_get_index_by_NID)                                                                  \
    X(X509_NAME_get_entry)                                                                         \
    X(X509_NAME_ENTRY_get_data)                                                                    \
    X(X509_get_ext_d2i)                                                                            \
    X(GENERAL_NAMES_free)                                                                          \
    X(OPENSSL_sk_num)                                                                              \
    X(OPENSSL_sk_value)                                                                            \
    X(ASN1_STRING_get0_data)                                                                       \
    X(ASN1_STRING_length)                                                                          \
    X(X509_get_extension_flags)                                                                    \
    X(X509_get_extended_key_usage)                                                                 \
    X(X509_get0_notBefore)                                                                         \
    X(X509_get0_notAfter)                                                                          \
    X(X509_cmp_current_time)                                                                       \
    X(X509_check_private_key)                                                                      \
    X(X509_STORE_new)                                                                              \
    X(X509_STORE_free)                                                                             \
    X(X509_STORE_add_cert)                                                                         \
    X(X509_STORE_set_flags)                                                                        \
    X(X509_STORE_set_default_paths)                                                                \
    X(X509_STORE_CTX_new)                                                                          \
    X(X509_STORE_CTX_free)                                                                         \
    X(X509_STORE_CTX_init)                                                                         \
    X(X509_STORE_CTX_set_purpose)                                                                  \
    X(X509_STORE_CTX_get_error)                                                                    \
    X(X509_verify_cert)                                                                            \
    X(X509_verify_cert_error_string)

/* libssl: the TLS layer */
#define RDT_OSSL_SSL(X)                                                                            \
    X(TLS_server_method)                                                                           \
    X(TLS_client_method)                                                                           \
    X(SSL_CTX_new)                                                                                 \
    X(SSL_CTX_free)                                                                                \
    X(SSL_CTX_ctrl)                                                                                \
    X(SSL_CTX_set_options)                                                                         \
    X(SSL_CTX_set_num_tickets)                                                                     \
    X(SSL_CTX_set_ciphersuites)                                                                    \
    X(SSL_CTX_use_certificate_chain_file)                                                          \
    X(SSL_CTX_use_PrivateKey)                                                                      \
    X(SSL_CTX_check_private_key)                                                                   \
    X(SSL_new)                                                                                     \
    X(SSL_free)                                                                                    \
    X(SSL_set_bio)                                                                                 \
    X(SSL_set_connect_state)                                                                       \
    X(SSL_set_accept_state)                                                                        \
    X(SSL_do_handshake)                                                                            \
    X(SSL_read_ex)                                                                                 \
    X(SSL_write_ex)                                                                                \
    X(SSL_get_error)                                                                               \
    X(SSL_shutdown)                                                                                \
    X(SSL_has_pending)                                                                             \
    X(SSL_CTX_set_default_read_buffer_len)                                                         \
    X(SSL_get1_peer_certificate)                                                                   \
    X(SSL_get_peer_cert_chain)

struct rdt_ossl {
#define RDT_OSSL_PTR(name) __typeof__(name) *name;
    RDT_OSSL_CRYPTO(RDT_OSSL_PTR)
    RDT_OSSL_SSL(RDT_OSSL_PTR)
#undef RDT_OSSL_PTR
};

extern struct rdt_ossl rdt_ossl_syms;
#define OSSL(name) (rdt_ossl_syms.name)

/* Loads libcrypto (and, with `ssl`, libssl) once: 0, or -ENOPKG with a message that names the
 * library and why it cannot be loaded. Safe to call from any thread, any number of times. */
int rdt_ossl_load(bool ssl, char *err, size_t errlen);

/* OpenSSL's last error as text ("no error" when there is none), clearing the queue. */
const char *rdt_ossl_error(char *buf, size_t len);

#endif
