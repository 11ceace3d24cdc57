// Package tlsconf owns agora's mutual TLS: which files a process loads,
// the tls.Configs its listeners and dialers use, how a peer's role is read
// from its certificate, and the development CA that `agora tls` drives.
//
// # Identities
//
// Every certificate is signed by the cluster's CA and names its role in a
// DNS subject alternative name of the form ROLE.CLUSTER.agora:
//
//	master.<cluster>.agora   a master: may serve the Connect API, join Raft
//	agent.<cluster>.agora    an agent: may call the AgentService
//	client.<cluster>.agora   an operator or framework: other calls only
//
// A role is proven by the CA's signature over that name, checked with
// x509's own hostname matching (Certificate.VerifyHostname), so a wildcard
// only the CA could have issued works as in any TLS deployment.
//
// # Using it
//
//  1. Describe the files with [Files] (flags, or [FilesFromEnv] for the
//     AGORA_TLS_CA, AGORA_TLS_CERT and AGORA_TLS_KEY variables) and call
//     [Files.Load] to get a [Bundle]. A zero Files means TLS is off.
//  2. Listeners take [Bundle.ServerConfig]: TLS 1.2 or later, a client
//     certificate signed by the CA is required.
//  3. Clients of a master take [Bundle.ClientConfig]: the master must
//     present a certificate for master.<cluster>.agora.
//  4. The Raft transport takes [Bundle.PeerConfig] on both ends: server
//     and client must both prove the master role.
//  5. A handler that needs a role calls [HasRole] on the peer's verified
//     leaf certificate (http.Request.TLS.PeerCertificates[0]).
//
// [NewCA], [CA.Issue], [WriteCA], [LoadCA] and [WriteCert] make a
// development CA and certificates: ECDSA P-256, crypto/x509 only.
package tlsconf
