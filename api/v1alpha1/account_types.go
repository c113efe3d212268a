package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Relation is how an account's counterparty relates to the connector.
// +kubebuilder:validation:Enum=parent;peer;child
type Relation string

// The three relations (RFC 34, and the JS connector's `relation`).
const (
	RelationParent Relation = "parent"
	RelationPeer   Relation = "peer"
	RelationChild  Relation = "child"
)

// The rule's regular expression allows up to 19 digits without leading zeros; the rest bounds
// the 19-digit ones to int64 by comparing strings: two digit strings of the same length,
// without leading zeros, compare as text as they do as numbers (a negative value and its bound
// share the "-" and compare by magnitude). It cannot use int(self): that fails on an overflow
// instead of returning false. A rule rather than a pattern, so that a bad value gets one
// message saying what to write. BalanceSpec's rules repeat it to guard their int() calls.
// +kubebuilder:validation:MaxLength=20
// +kubebuilder:validation:XValidation:rule="self.matches('^-?(0|[1-9][0-9]{0,18})$') && (self.startsWith('-') ? (size(self) < 20 || self <= '-9223372036854775808') : (size(self) < 19 || self <= '9223372036854775807'))",message="must be a whole number of base units from -9223372036854775808 to 9223372036854775807 (int64), written as digits with an optional leading '-': no '+', decimal point, exponent or leading zero"

// IntegerString is a signed integer amount in an account's base units, written as a string
// because amounts exceed what JSON numbers carry exactly. The runtime reads it as an int64.
type IntegerString string

// The rule's regular expression allows up to 20 digits without leading zeros, and no 0: every
// AmountString field (maxPacketAmount, the throughput amounts) means "no limit" when omitted,
// and the runtime refuses 0. The rest bounds the 20-digit ones to uint64 by comparing strings,
// which for digit strings of the same length without leading zeros orders them as numbers. A
// rule rather than a pattern, so that a 0 is told what to write instead.
// message is the fallback of messageExpression, and what the CRD reference lists.
// +kubebuilder:validation:MaxLength=20
// +kubebuilder:validation:XValidation:rule="self.matches('^[1-9][0-9]{0,19}$') && (size(self) < 20 || self <= '18446744073709551615')",messageExpression="self.matches('^[-+]?[0.]+$') ? 'must be at least 1: for no limit, leave the field out (0 is not accepted)' : 'must be a whole number of base units from 1 to 18446744073709551615 (uint64), written as digits only: no sign, decimal point, exponent or leading zero; for no limit, leave the field out'",message="must be a whole number of base units from 1 to 18446744073709551615 (uint64), written as digits only: no sign, decimal point, exponent or leading zero; for no limit, leave the field out (0 is not accepted)"

// AmountString is a positive integer amount in base units, as a string. The runtime reads it
// as a uint64.
type AmountString string

// The settleEvery rule on AccountSpec skips a value the field's pattern refuses: duration() of
// it would fail with a conversion error beside the pattern's message.

// AccountSpec is one account of a connector: the counterparty, the link to it and its limits.
// It mirrors one entry of the JS connector's CONNECTOR_ACCOUNTS.
// +kubebuilder:validation:XValidation:rule="self.connectorRef == oldSelf.connectorRef",message="connectorRef is immutable: create a new Account instead"
// +kubebuilder:validation:XValidation:rule="!has(self.ilpAddressSegment) || self.relation == 'child'",message="ilpAddressSegment applies to child accounts only"
// +kubebuilder:validation:XValidation:rule="!has(self.settleEvery) || has(self.settlementEngineRef)",message="settleEvery needs settlementEngineRef: only an engine can settle"
// +kubebuilder:validation:XValidation:rule="!has(self.settleEvery) || !self.settleEvery.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self.settleEvery) >= duration('1s')",message="settleEvery must be at least 1s"
type AccountSpec struct {
	// ConnectorRef names the Connector (same namespace) this account belongs to. Immutable.
	// +kubebuilder:validation:MinLength=1
	ConnectorRef string `json:"connectorRef"`

	// Relation of the counterparty: parent, peer or child.
	Relation Relation `json:"relation"`

	// AssetCode selects the rate for this account, e.g. USD or XRP.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=16
	AssetCode string `json:"assetCode"`

	// AssetScale is the number of decimal places of the base unit: 9 means amounts in 1e-9 units.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=255
	AssetScale int32 `json:"assetScale"`

	// Link is how the connector reaches the counterparty.
	Link AccountLink `json:"link"`

	// Balance enables balance tracking with these limits (the balance middleware).
	// +optional
	Balance *BalanceSpec `json:"balance,omitempty"`

	// MaxPacketAmount rejects incoming packets above this amount with F08.
	// +optional
	MaxPacketAmount *AmountString `json:"maxPacketAmount,omitempty"`

	// ILPAddressSegment is appended to the connector's address to form a child's address;
	// unset means the Account's name.
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9_~-]+$`
	// +optional
	ILPAddressSegment string `json:"ilpAddressSegment,omitempty"`

	// SendRoutes broadcasts our routes to this account over CCP; unset: false for children, true otherwise.
	// +optional
	SendRoutes *bool `json:"sendRoutes,omitempty"`

	// ReceiveRoutes accepts routes from this account over CCP; unset: false for children, true otherwise.
	// +optional
	ReceiveRoutes *bool `json:"receiveRoutes,omitempty"`

	// RateLimit is a token bucket of incoming packets (the rateLimit middleware); unset: the JS
	// defaults (10000 packets per minute).
	// +optional
	RateLimit *RateLimitSpec `json:"rateLimit,omitempty"`

	// Throughput limits the amount per period in each direction (the throughput middleware);
	// unset: unlimited.
	// +optional
	Throughput *ThroughputSpec `json:"throughput,omitempty"`

	// Deduplicate tunes the cache of outgoing packets that drops retransmissions (the
	// deduplicate middleware); unset: the JS defaults (30s and 30s).
	// +optional
	Deduplicate *DeduplicateSpec `json:"deduplicate,omitempty"`

	// SettlementEngineRef names the SettlementEngine (same namespace) that settles this
	// account's balance; its asset must be this account's asset. Unset: no settlement.
	// +kubebuilder:validation:MinLength=1
	// +optional
	SettlementEngineRef string `json:"settlementEngineRef,omitempty"`

	// SettleEvery settles, when the connector starts and then at this interval, whatever the
	// balance is below balance.settleTo, even when it has not fallen below the threshold
	// (interledger-rs's settle_every); unset: at the threshold only. That includes what the
	// peer prepaid: keep settleTo at or below minus the most it may prepay. Once per interval
	// (the clock divided by it), across replicas and restarts. At least 1s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	SettleEvery *metav1.Duration `json:"settleEvery,omitempty"`
}

// RateLimitSpec is a token bucket of incoming packets: Capacity tokens at most, RefillCount
// added every RefillPeriod.
type RateLimitSpec struct {
	// RefillPeriod between refills; unset: 1m (what the JS middleware does).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	RefillPeriod *metav1.Duration `json:"refillPeriod,omitempty"`
	// RefillCount tokens added each period; unset: 10000.
	// +kubebuilder:validation:Minimum=1
	// +optional
	RefillCount *int64 `json:"refillCount,omitempty"`
	// Capacity of the bucket; unset: RefillCount.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Capacity *int64 `json:"capacity,omitempty"`
}

// ThroughputSpec limits the amount forwarded per RefillPeriod, in base units.
type ThroughputSpec struct {
	// RefillPeriod of the limits; unset: 1s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	RefillPeriod *metav1.Duration `json:"refillPeriod,omitempty"`
	// IncomingAmount per period from this account; unset: unlimited.
	// +optional
	IncomingAmount *AmountString `json:"incomingAmount,omitempty"`
	// OutgoingAmount per period to this account; unset: unlimited.
	// +optional
	OutgoingAmount *AmountString `json:"outgoingAmount,omitempty"`
}

// DeduplicateSpec tunes the duplicate-packet cache.
type DeduplicateSpec struct {
	// CleanupInterval between sweeps of the cache; unset: 30s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	CleanupInterval *metav1.Duration `json:"cleanupInterval,omitempty"`
	// PacketLifetime a packet stays in the cache; unset: 30s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	PacketLifetime *metav1.Duration `json:"packetLifetime,omitempty"`
}

// AccountLink is exactly one way of reaching the counterparty.
// +kubebuilder:validation:XValidation:rule="[has(self.btpClient), has(self.btpListener), has(self.btpChildServer), has(self.http)].filter(x, x).size() == 1",message="set exactly one of btpClient, btpListener, btpChildServer, http"
type AccountLink struct {
	// BTPClient dials the counterparty's BTP server (ilp-plugin-btp with `server`).
	// +optional
	BTPClient *BTPClientLink `json:"btpClient,omitempty"`
	// BTPListener accepts one BTP peer on a port (ilp-plugin-btp with `listener`).
	// +optional
	BTPListener *BTPListenerLink `json:"btpListener,omitempty"`
	// BTPChildServer accepts many children, one per connection (ilp-plugin-mini-accounts).
	// +optional
	BTPChildServer *BTPChildServerLink `json:"btpChildServer,omitempty"`
	// HTTP exchanges packets with one peer over ILP-over-HTTP (RFC 35, ilp-plugin-http), what
	// interledger-rs, Rafiki and the Java connector speak: the peer POSTs its packets to our
	// incoming port, we POST ours to its outgoing URL.
	// +optional
	HTTP *HTTPLink `json:"http,omitempty"`
}

// ListenPort is the port the link listens on and the kind of link ("btp" or "http"), when it
// is a server: btpListener, btpChildServer, or http with incoming.
func (l AccountLink) ListenPort() (kind string, port int32, ok bool) {
	switch {
	case l.BTPListener != nil:
		return "btp", l.BTPListener.Port, true
	case l.BTPChildServer != nil:
		return "btp", l.BTPChildServer.Port, true
	case l.HTTP != nil && l.HTTP.Incoming != nil:
		return "http", l.HTTP.Incoming.Port, true
	}
	return "", 0, false
}

// BTPClientLink dials a BTP server.
// +kubebuilder:validation:XValidation:rule="!self.url.matches('^[a-zA-Z0-9+.-]*://[^/]*@')",fieldPath=".url",message="link.btpClient.url must not carry credentials (btp+ws://user:token@host, as the JS plugin takes them): put the token in the Secret that tokenSecretRef names, the user in username, and leave btp+ws://host:port/path"
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || self.url.startsWith('btp+wss://')",fieldPath=".tls",message="link.btpClient.tls applies to a btp+wss:// url only (btp+ws:// is not encrypted): change url to btp+wss://host:port/path, or remove tls"
type BTPClientLink struct {
	// Rules rather than a pattern on the URLs: a pattern's error quotes the value, and a URL
	// written the JS way carries the token (btp+ws://:token@host). The rule refusing
	// credentials sits on the object, whose errors quote no value; the one on the field checks
	// the rest only of a URL without them.

	// URL of the server without credentials: btp+ws://host:port/path or btp+wss://….
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-zA-Z0-9+.-]*://[^/]*@') || self.matches('^btp[+]wss?://[^@/]+(/.*)?$')",message="link.btpClient.url must be btp+ws://host:port/path, or btp+wss://… for TLS (the path is optional)"
	URL string `json:"url"`
	// Username sent as auth_username; optional.
	// +optional
	Username string `json:"username,omitempty"`
	// TokenSecretRef holds the auth_token.
	TokenSecretRef SecretKeyRef `json:"tokenSecretRef"`
	// TLS sets how the btp+wss:// connection verifies the server and which client certificate
	// it presents; unset: the system's trusted authorities and no client certificate.
	// +optional
	TLS *ClientTLS `json:"tls,omitempty"`
}

// ClientTLS is the TLS of a link that dials out (btpClient, http.outgoing): the authorities to
// trust, the client certificate to present (mutual TLS), and the name to verify. A change of
// its Secrets (a renewal by cert-manager) reconnects the link with them, without restarting
// the pods.
// +kubebuilder:validation:XValidation:rule="has(self.caSecretRef) || has(self.certificateSecretRef) || has(self.serverName)",message="tls needs caSecretRef, certificateSecretRef or serverName: to trust the system's authorities and present no client certificate, leave tls out"
type ClientTLS struct {
	// CASecretRef names a key holding the PEM certificates of the authorities to trust, e.g.
	// the private CA's ca.crt: the peer's server certificate must chain to one of them, and the
	// system's authorities are no longer trusted. Unset: the system's.
	// +optional
	CASecretRef *SecretKeyRef `json:"caSecretRef,omitempty"`
	// CertificateSecretRef names a Secret of type kubernetes.io/tls (what cert-manager writes)
	// whose tls.crt (the certificate chain, PEM) and tls.key (its private key, PEM) are
	// presented as the client certificate. Unset: none is presented.
	// +optional
	CertificateSecretRef *TLSSecretRef `json:"certificateSecretRef,omitempty"`
	// ServerName is the DNS name the server's certificate must carry, and the name sent in
	// SNI, when it is not the URL's host (e.g. a URL naming an IP address or an internal
	// alias). Unset: the URL's host.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?([.][a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*$')",message="serverName must be a DNS name such as bob.example: labels of letters, digits and '-', joined by '.', without scheme, port, path or trailing dot"
	// +optional
	ServerName string `json:"serverName,omitempty"`
}

// TLSSecretRef names a Secret of type kubernetes.io/tls in the object's namespace: its keys
// tls.crt and tls.key are used.
type TLSSecretRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// ServerTLS is the TLS of a link that listens (btpListener, btpChildServer, http.incoming):
// the port serves TLS (btp+wss://, https://) with the server certificate of a
// kubernetes.io/tls Secret and, with clientCASecretRef, requires a client certificate (mutual
// TLS). A renewal of the certificate Secret (cert-manager rewriting it) comes into force in
// place, without restarting the pods or closing connections: open connections stay up, new
// ones see the new certificate. A change of the client CA or of clientNames reconnects the
// link, so that the connected peers go through the new check too.
// +kubebuilder:validation:XValidation:rule="!has(self.clientNames) || has(self.clientCASecretRef)",fieldPath=".clientNames",message="tls.clientNames needs clientCASecretRef: the names are checked on client certificates, which are asked for only with the CA that signs them; set clientCASecretRef (e.g. the ca.crt of the peering CA's Secret), or remove clientNames"
type ServerTLS struct {
	// CertificateSecretRef names a Secret of type kubernetes.io/tls (what cert-manager writes)
	// whose tls.crt (the server certificate chain, PEM: the certificate first, then its
	// intermediates) and tls.key (its private key, PEM) the port presents. The certificate
	// must name the host the peers dial (their URL's host, or the serverName they verify).
	CertificateSecretRef TLSSecretRef `json:"certificateSecretRef"`
	// ClientCASecretRef names a key holding the PEM certificates of the authorities that sign
	// the peers' client certificates, e.g. the ca.crt of the Secret cert-manager writes for
	// the issuing CA. Set: every peer must present a client certificate chaining to one of
	// them (mutual TLS), and a connection without one is refused in the handshake. Unset: no
	// client certificate is asked for, and peers authenticate with the link's secret or
	// token only.
	// +optional
	ClientCASecretRef *SecretKeyRef `json:"clientCASecretRef,omitempty"`
	// ClientNames, with clientCASecretRef only, are the peers accepted among those whose
	// client certificate chains to that CA: the certificate must carry one of these names as a
	// DNS name (compared in any case), a URI (exact, e.g. a SPIFFE ID
	// spiffe://peering.example/bob) or an email address among its subject alternative names,
	// or as its subject Common Name (exact), else the handshake is refused and the connector
	// logs the names the certificate holds. Where peers share one peering CA, this ties the
	// port to its peer: on btpListener and http.incoming (one peer per port), list that peer's
	// name. On btpChildServer it limits which children may connect at all, not which account
	// a child may log into. 1 to 64 names of 1 to 253 characters. Unset: any certificate
	// from the client CA is accepted.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	ClientNames []string `json:"clientNames,omitempty"`
}

// BTPListenerLink accepts one BTP peer.
type BTPListenerLink struct {
	// Port to listen on.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// SecretRef holds the shared secret the peer authenticates with.
	SecretRef SecretKeyRef `json:"secretRef"`
	// TLS makes the port serve btp+wss:// with a server certificate, and with clientCASecretRef
	// require the peer's client certificate; unset: plain btp+ws://, TLS (if any) ending in
	// front of the pods, at a load balancer or an ingress.
	// +optional
	TLS *ServerTLS `json:"tls,omitempty"`
}

// BTPChildServerLink accepts child connections.
type BTPChildServerLink struct {
	// Port to listen on.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// TLS makes the port serve btp+wss:// with a server certificate, and with clientCASecretRef
	// require each child's client certificate; unset: plain btp+ws://, TLS (if any) ending in
	// front of the pods, at a load balancer or an ingress.
	// +optional
	TLS *ServerTLS `json:"tls,omitempty"`
}

// HTTPMode is how ILP-over-HTTP carries the replies.
// +kubebuilder:validation:Enum=sync;async
type HTTPMode string

// The two modes of ILP-over-HTTP (the runtime's ilphttp.Mode).
const (
	// HTTPModeSync answers a Prepare in the body of the HTTP response: what every deployed
	// implementation speaks.
	HTTPModeSync HTTPMode = "sync"
	// HTTPModeAsync answers a Prepare with 202 and POSTs the reply back to the sender's
	// callback URL (the current RFC 35).
	HTTPModeAsync HTTPMode = "async"
)

// HTTPLink is one ILP-over-HTTP peer (the options of ilp-plugin-http): incoming, outgoing or
// both. A peer that only receives from us needs outgoing only; one that only sends to us,
// incoming only.
// +kubebuilder:validation:XValidation:rule="has(self.incoming) || has(self.outgoing)",message="http needs incoming (to accept the peer's packets), outgoing (to send it ours), or both"
// +kubebuilder:validation:XValidation:rule="!has(self.mode) || self.mode != 'async' || (has(self.incoming) && has(self.outgoing) && has(self.outgoing.callbackURL))",message="http.mode async needs incoming (where the replies arrive), outgoing and outgoing.callbackURL"
// +kubebuilder:validation:XValidation:rule="!has(self.outgoing) || !has(self.outgoing.callbackURL) || (has(self.mode) && self.mode == 'async')",message="http.outgoing.callbackURL applies to mode async only"
type HTTPLink struct {
	// Mode is sync (unset) or async. Async needs incoming, outgoing and outgoing.callbackURL.
	// +optional
	Mode HTTPMode `json:"mode,omitempty"`
	// Incoming serves the peer's packets on a port of the connector pods.
	// +optional
	Incoming *HTTPIncoming `json:"incoming,omitempty"`
	// Outgoing sends our packets to the peer.
	// +optional
	Outgoing *HTTPOutgoing `json:"outgoing,omitempty"`
}

// HTTPIncoming is the server that accepts the peer's packets (ilp-plugin-http `incoming`). It
// accepts any path, so the peer may POST to /accounts/<name>/ilp like interledger-rs.
// +kubebuilder:validation:XValidation:rule="has(self.tokenSecretRef) || has(self.jwtSecretRef)",message="http.incoming needs tokenSecretRef or jwtSecretRef: the credential the peer must send"
type HTTPIncoming struct {
	// Port to listen on; the peer Service exposes it.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// TokenSecretRef holds the bearer token the peer must send (staticToken).
	// +optional
	TokenSecretRef *SecretKeyRef `json:"tokenSecretRef,omitempty"`
	// JWTSecretRef holds the secret of the HS256 JSON web tokens the peer may send instead
	// (jwtSecret). With both set, either is accepted.
	// +optional
	JWTSecretRef *SecretKeyRef `json:"jwtSecretRef,omitempty"`
	// TLS makes the port serve https:// with a server certificate, and with clientCASecretRef
	// require the peer's client certificate (RFC 35 recommends client certificates); unset:
	// plain http://, TLS (if any) ending in front of the pods, at a load balancer or an
	// ingress.
	// +optional
	TLS *ServerTLS `json:"tls,omitempty"`
}

// HTTPOutgoing is where our packets go (ilp-plugin-http `outgoing`).
// +kubebuilder:validation:XValidation:rule="has(self.tokenSecretRef) || has(self.jwtSecretRef)",message="http.outgoing needs tokenSecretRef or jwtSecretRef: the credential we send"
// +kubebuilder:validation:XValidation:rule="!self.url.matches('^[a-zA-Z0-9+.-]*://[^/?#]*@')",fieldPath=".url",message="link.http.outgoing.url must not carry credentials (https://user:token@host): put the token in the Secret that tokenSecretRef names (or sign tokens with jwtSecretRef), and leave https://host:port/path"
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || self.url.startsWith('https://')",fieldPath=".tls",message="link.http.outgoing.tls applies to an https:// url only (http:// is not encrypted): change url to https://host[:port]/path, or remove tls"
type HTTPOutgoing struct {
	// The rules on URL and on the object: see BTPClientLink.URL.

	// URL every Prepare is POSTed to, without credentials: http(s)://host[:port]/path, e.g.
	// https://peer.example/accounts/us/ilp.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-zA-Z0-9+.-]*://[^/?#]*@') || self.matches('^https?://[^/?#@[:space:]]+([/?#][^[:space:]]*)?$')",message="link.http.outgoing.url must be http://host[:port][/path] or https://…, without spaces"
	URL string `json:"url"`
	// TokenSecretRef holds the bearer token we send (staticToken).
	// +optional
	TokenSecretRef *SecretKeyRef `json:"tokenSecretRef,omitempty"`
	// JWTSecretRef holds the secret we sign HS256 JSON web tokens with instead (jwtSecret).
	// +optional
	JWTSecretRef *SecretKeyRef `json:"jwtSecretRef,omitempty"`
	// CallbackURL is, in async mode, where the peer POSTs the replies: this Account's incoming
	// port as the peer reaches it (e.g. http://alice.ns.svc:7769/ilp/callback), on the
	// scheme, host and port the peer's own outgoing URL for us has, or the peer refuses it.
	// +kubebuilder:validation:Pattern=`^https?://[^/?#@\s]+([/?#]\S*)?$`
	// +optional
	CallbackURL string `json:"callbackURL,omitempty"`
	// TLS sets how the https:// requests verify the peer and which client certificate they
	// present (RFC 35 recommends client certificates); unset: the system's trusted authorities
	// and no client certificate.
	// +optional
	TLS *ClientTLS `json:"tls,omitempty"`
}

// The rules compare the limits only when each is an int64 as IntegerString's rule checks
// (repeated here): int() of any other string fails with a type conversion error that the API
// server would add to IntegerString's message.

// BalanceSpec are the balance limits, in base units. Positive: the counterparty owes us (RFC 32).
// +kubebuilder:validation:XValidation:rule="!has(self.minimum) || !has(self.maximum) || !(self.minimum.matches('^-?(0|[1-9][0-9]{0,18})$') && (self.minimum.startsWith('-') ? (size(self.minimum) < 20 || self.minimum <= '-9223372036854775808') : (size(self.minimum) < 19 || self.minimum <= '9223372036854775807'))) || !(self.maximum.matches('^-?(0|[1-9][0-9]{0,18})$') && (self.maximum.startsWith('-') ? (size(self.maximum) < 20 || self.maximum <= '-9223372036854775808') : (size(self.maximum) < 19 || self.maximum <= '9223372036854775807'))) || int(self.minimum) <= int(self.maximum)",message="balance.minimum must be <= balance.maximum"
// +kubebuilder:validation:XValidation:rule="!has(self.settleThreshold) || !(self.settleThreshold.matches('^-?(0|[1-9][0-9]{0,18})$') && (self.settleThreshold.startsWith('-') ? (size(self.settleThreshold) < 20 || self.settleThreshold <= '-9223372036854775808') : (size(self.settleThreshold) < 19 || self.settleThreshold <= '9223372036854775807'))) || (has(self.settleTo) && !(self.settleTo.matches('^-?(0|[1-9][0-9]{0,18})$') && (self.settleTo.startsWith('-') ? (size(self.settleTo) < 20 || self.settleTo <= '-9223372036854775808') : (size(self.settleTo) < 19 || self.settleTo <= '9223372036854775807')))) || int(self.settleThreshold) <= (has(self.settleTo) ? int(self.settleTo) : 0)",message="balance.settleThreshold must be <= balance.settleTo (settlement raises the balance from the threshold to settleTo)"
type BalanceSpec struct {
	// Minimum below which outgoing packets are rejected (T04); unset: no minimum.
	// +optional
	Minimum *IntegerString `json:"minimum,omitempty"`
	// Maximum above which incoming packets are rejected (T04); unset: no maximum.
	// +optional
	Maximum *IntegerString `json:"maximum,omitempty"`
	// SettleThreshold below which a settlement is started; unset: never.
	// +optional
	SettleThreshold *IntegerString `json:"settleThreshold,omitempty"`
	// SettleTo is the balance a settlement aims for; unset: 0.
	// +optional
	SettleTo *IntegerString `json:"settleTo,omitempty"`
}

// AccountStatus reports the account as the connector pods see it. Its conditions: Ready and
// ReferencesResolved (the operator's), and ConfigApplied (the connector pods', present only on
// an account they leave out of their configuration, or left out before); Ready is False while
// ConfigApplied is False at the account's current generation.
type AccountStatus struct {
	BaseStatus `json:",inline"`
	// Connected is true when the link to the counterparty is up (ILP-over-HTTP, which has no
	// connection: whenever the pods run the Account).
	// +optional
	Connected bool `json:"connected,omitempty"`
	// Balance is the current balance in base units.
	// +optional
	Balance string `json:"balance,omitempty"`
}

// Account is one account of a connector.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ilpacct;ilpa,categories=ilp
// +kubebuilder:printcolumn:name="Connector",type=string,JSONPath=`.spec.connectorRef`
// +kubebuilder:printcolumn:name="Relation",type=string,JSONPath=`.spec.relation`
// +kubebuilder:printcolumn:name="Asset",type=string,JSONPath=`.spec.assetCode`
// +kubebuilder:printcolumn:name="Connected",type=boolean,JSONPath=`.status.connected`
// +kubebuilder:printcolumn:name="Balance",type=string,JSONPath=`.status.balance`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Engine",type=string,JSONPath=`.spec.settlementEngineRef`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Account struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AccountSpec   `json:"spec"`
	Status AccountStatus `json:"status,omitempty"`
}

// AccountList is a list of Accounts.
// +kubebuilder:object:root=true
type AccountList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Account `json:"items"`
}
