// Package auth authenticates API callers by API key (header X-API-Key) or, optionally, by
// a JWT bearer token (Authorization: Bearer …), and gives each request an Identity that
// later steps (rate limiting, logs) can trust.
//
// API keys come from configuration only. They are kept in memory as SHA-256 digests and a
// presented key is compared, by digest, against every configured one with
// crypto/subtle, without stopping at the first match: the time taken does not depend on
// which key matched or how much of it. There is no built-in key, except the original's
// "enterprise-api-key-demo" in an explicit development mode; a service with
// authentication on and nothing to check against refuses to start (NewAuthenticator
// returns an error).
//
// JWTs are verified with one configured key and the one algorithm that key is for
// (HS256 for a shared secret, RS256, ES256 or EdDSA for a public key; jwt.WithValidMethods),
// must carry an expiry (exp) and a subject (sub, the identity), and are checked against
// the configured issuer and audience when those are set.
package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/dblayers/dblayers/internal/httpapi"
)

// DevAPIKey is the original project's API key. It is accepted only in development mode.
const DevAPIKey = "enterprise-api-key-demo"

// MinKeyLength is the shortest API key accepted from configuration, and MinSecretLength
// the shortest HS256 secret (256 bits, RFC 7518 §3.2).
const (
	MinKeyLength    = 16
	MinSecretLength = 32
)

// Config is where the keys come from.
type Config struct {
	// Enabled turns authentication on (AUTH_ENABLED, default true). Off, every request is
	// anonymous and rate limits apply per client address.
	Enabled bool `env:"AUTH_ENABLED" default:"true"`
	// APIKeys are "id:key" pairs (API_KEYS, comma-separated). The id names the caller in
	// logs and rate limits; the key is never logged.
	APIKeys []string `env:"API_KEYS" secret:"true"`
	// APIKeyHashes are "id:sha256-hex" pairs (API_KEY_HASHES): keys configured by digest
	// (echo -n "$key" | sha256sum), so the keys themselves need not be in the environment.
	APIKeyHashes []string `env:"API_KEY_HASHES" secret:"true"`
	// APIKey is the original's single key (API_KEY), id "default". No default value.
	APIKey string `env:"API_KEY" secret:"true"`
	// DevMode accepts DevAPIKey (id "dev") besides the configured keys (AUTH_DEV_MODE, or
	// ENVIRONMENT=development, which the layer passes on). Never in production.
	DevMode bool `env:"AUTH_DEV_MODE"`
	// JWTSecret enables HS256 bearer tokens signed with this secret (JWT_SECRET, ≥ 32 bytes).
	JWTSecret string `env:"JWT_SECRET" secret:"true"`
	// JWTPublicKey enables bearer tokens signed with the matching private key
	// (JWT_PUBLIC_KEY): a PEM "PUBLIC KEY" block, or the path of a file holding one. An
	// RSA key means RS256, an Ed25519 key EdDSA, a P-256 key ES256.
	JWTPublicKey string        `env:"JWT_PUBLIC_KEY"`
	JWTIssuer    string        `env:"JWT_ISSUER"`              // required iss, if set
	JWTAudience  string        `env:"JWT_AUDIENCE"`            // required aud, if set
	JWTLeeway    time.Duration `env:"JWT_LEEWAY" default:"0s"` // clock skew allowed on exp/nbf
}

// Identity is an authenticated caller.
type Identity struct {
	Method string // "api_key", "jwt" or "anonymous"
	ID     string // the key's id, the token's subject, or the client address
}

// Key is the identity as one string, unique across methods: "key:<id>", "jwt:<sub>" or
// "ip:<address>". Rate limits are kept per Key.
func (i Identity) Key() string {
	switch i.Method {
	case MethodAPIKey:
		return "key:" + i.ID
	case MethodJWT:
		return "jwt:" + i.ID
	}
	return "ip:" + i.ID
}

// Authentication methods.
const (
	MethodAPIKey    = "api_key"
	MethodJWT       = "jwt"
	MethodAnonymous = "anonymous"
)

// Failure reasons, as reported to OnFailure (and in metrics).
const (
	ReasonMissing      = "missing"
	ReasonInvalidKey   = "invalid_key"
	ReasonInvalidToken = "invalid_token"
	ReasonExpiredToken = "expired_token"
)

// The client-facing 401 details.
const (
	DetailInvalidKey   = "Invalid API key" // the original's message, also for a missing key
	DetailInvalidToken = "Invalid token"
	DetailExpiredToken = "Token expired"
)

type apiKey struct {
	id     string
	digest [sha256.Size]byte
}

// Authenticator checks requests.
type Authenticator struct {
	enabled bool
	keys    []apiKey
	dev     bool
	parser  *jwt.Parser
	jwtKey  any
	jwtAlg  string

	// OnFailure, if set, is told why each refused request was refused (metrics).
	OnFailure func(reason string)
}

// NewAuthenticator reads cfg. With authentication enabled it needs at least one API key
// or a JWT key (or development mode); otherwise it returns an error saying what to set.
func NewAuthenticator(cfg Config) (*Authenticator, error) {
	a := &Authenticator{enabled: cfg.Enabled, dev: cfg.DevMode}
	if !cfg.Enabled {
		return a, nil
	}
	add := func(id string, digest [sha256.Size]byte) error {
		if id == "" {
			return errors.New("an API key needs an id (id:key)")
		}
		for _, k := range a.keys {
			if k.id == id {
				return fmt.Errorf("API key id %q is configured twice", id)
			}
		}
		a.keys = append(a.keys, apiKey{id: id, digest: digest})
		return nil
	}
	for _, pair := range cfg.APIKeys {
		id, key, ok := strings.Cut(pair, ":")
		if !ok {
			return nil, errors.New("API_KEYS: every entry is id:key")
		}
		if len(key) < MinKeyLength {
			return nil, fmt.Errorf("API_KEYS: the key of %q is shorter than %d characters", id, MinKeyLength)
		}
		if err := add(id, sha256.Sum256([]byte(key))); err != nil {
			return nil, fmt.Errorf("API_KEYS: %w", err)
		}
	}
	for _, pair := range cfg.APIKeyHashes {
		id, hexDigest, ok := strings.Cut(pair, ":")
		raw, err := hex.DecodeString(hexDigest)
		if !ok || err != nil || len(raw) != sha256.Size {
			return nil, errors.New("API_KEY_HASHES: every entry is id:<64 hex digits of SHA-256>")
		}
		if err := add(id, [sha256.Size]byte(raw)); err != nil {
			return nil, fmt.Errorf("API_KEY_HASHES: %w", err)
		}
	}
	if cfg.APIKey != "" {
		if len(cfg.APIKey) < MinKeyLength {
			return nil, fmt.Errorf("API_KEY is shorter than %d characters", MinKeyLength)
		}
		if err := add("default", sha256.Sum256([]byte(cfg.APIKey))); err != nil {
			return nil, fmt.Errorf("API_KEY: %w", err)
		}
	}
	if cfg.DevMode {
		if err := add("dev", sha256.Sum256([]byte(DevAPIKey))); err != nil {
			return nil, fmt.Errorf("development key: %w", err)
		}
	}
	if err := a.configureJWT(cfg); err != nil {
		return nil, err
	}
	if len(a.keys) == 0 && a.parser == nil {
		return nil, errors.New("authentication is on (AUTH_ENABLED=true) but no key is configured: " +
			"set API_KEYS (id:key,…), API_KEY_HASHES (id:sha256,…), API_KEY, JWT_SECRET or JWT_PUBLIC_KEY; " +
			"or ENVIRONMENT=development for the development key; or AUTH_ENABLED=false")
	}
	return a, nil
}

func (a *Authenticator) configureJWT(cfg Config) error {
	switch {
	case cfg.JWTSecret != "" && cfg.JWTPublicKey != "":
		return errors.New("set JWT_SECRET or JWT_PUBLIC_KEY, not both: one key, one algorithm")
	case cfg.JWTSecret != "":
		if len(cfg.JWTSecret) < MinSecretLength {
			return fmt.Errorf("JWT_SECRET is shorter than %d bytes", MinSecretLength)
		}
		a.jwtKey, a.jwtAlg = []byte(cfg.JWTSecret), jwt.SigningMethodHS256.Alg()
	case cfg.JWTPublicKey != "":
		key, alg, err := parsePublicKey(cfg.JWTPublicKey)
		if err != nil {
			return fmt.Errorf("JWT_PUBLIC_KEY: %w", err)
		}
		a.jwtKey, a.jwtAlg = key, alg
	default:
		return nil
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{a.jwtAlg}), jwt.WithExpirationRequired(), jwt.WithLeeway(cfg.JWTLeeway)}
	if cfg.JWTIssuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.JWTIssuer))
	}
	if cfg.JWTAudience != "" {
		opts = append(opts, jwt.WithAudience(cfg.JWTAudience))
	}
	a.parser = jwt.NewParser(opts...)
	return nil
}

// parsePublicKey reads a PEM public key (or a file holding one) and returns it with the
// one algorithm it verifies.
func parsePublicKey(s string) (any, string, error) {
	data := []byte(s)
	if !strings.Contains(s, "-----BEGIN") {
		var err error
		if data, err = os.ReadFile(s); err != nil {
			return nil, "", err
		}
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, "", errors.New("no PEM block")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, "", err
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, "", fmt.Errorf("RSA key of %d bits: need at least 2048", k.N.BitLen())
		}
		return k, jwt.SigningMethodRS256.Alg(), nil
	case ed25519.PublicKey:
		return k, jwt.SigningMethodEdDSA.Alg(), nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, "", errors.New("only P-256 ECDSA keys (ES256) are supported")
		}
		return k, jwt.SigningMethodES256.Alg(), nil
	}
	return nil, "", fmt.Errorf("unsupported key type %T", key)
}

// Enabled reports whether requests are checked.
func (a *Authenticator) Enabled() bool { return a.enabled }

// JWT reports whether bearer tokens are accepted, and with which algorithm.
func (a *Authenticator) JWT() (alg string, ok bool) { return a.jwtAlg, a.parser != nil }

// DevMode reports whether the development key is accepted.
func (a *Authenticator) DevMode() bool { return a.enabled && a.dev }

// Keys is the number of API keys accepted.
func (a *Authenticator) Keys() int { return len(a.keys) }

// Error is a refused authentication: the reason (for metrics) and the 401 detail.
type Error struct {
	Reason string
	Detail string
}

func (e *Error) Error() string { return "authentication failed: " + e.Reason }

// Authenticate checks r. An X-API-Key header, if present, decides; otherwise an
// Authorization: Bearer token, if JWTs are enabled; otherwise the request has no
// credentials and is refused as the original refused it ("Invalid API key").
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	if !a.enabled {
		return Identity{Method: MethodAnonymous, ID: clientAddress(r)}, nil
	}
	if key, ok := r.Header["X-Api-Key"]; ok && len(key) > 0 {
		if id, ok := a.matchKey(key[0]); ok {
			return Identity{Method: MethodAPIKey, ID: id}, nil
		}
		return Identity{}, &Error{Reason: ReasonInvalidKey, Detail: DetailInvalidKey}
	}
	if token, ok := bearer(r); ok && a.parser != nil {
		return a.verifyToken(token)
	}
	return Identity{}, &Error{Reason: ReasonMissing, Detail: DetailInvalidKey}
}

// matchKey compares the digest of key with every configured digest in constant time,
// and without stopping at a match.
func (a *Authenticator) matchKey(key string) (string, bool) {
	digest := sha256.Sum256([]byte(key))
	match := -1
	for i := range a.keys {
		if subtle.ConstantTimeCompare(digest[:], a.keys[i].digest[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return "", false
	}
	return a.keys[match].id, true
}

func (a *Authenticator) verifyToken(token string) (Identity, error) {
	var claims jwt.RegisteredClaims
	_, err := a.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return a.jwtKey, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Identity{}, &Error{Reason: ReasonExpiredToken, Detail: DetailExpiredToken}
	case err != nil:
		return Identity{}, &Error{Reason: ReasonInvalidToken, Detail: DetailInvalidToken}
	case claims.Subject == "":
		return Identity{}, &Error{Reason: ReasonInvalidToken, Detail: DetailInvalidToken}
	}
	return Identity{Method: MethodJWT, ID: claims.Subject}, nil
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// clientAddress is the request's remote host, without the port: RemoteAddr is host:port
// from the connection (a bare address, IPv6 in brackets or not, is taken as it is).
func clientAddress(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return strings.Trim(r.RemoteAddr, "[]")
}

type ctxKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// IdentityFrom returns the identity Middleware stored in ctx.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// Middleware lets authenticated requests through, with their Identity in the context,
// and answers the others 401 {"detail": …}. Token failures carry a WWW-Authenticate
// challenge (RFC 6750).
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := a.Authenticate(r)
		if err != nil {
			var ae *Error
			if errors.As(err, &ae) {
				if a.OnFailure != nil {
					a.OnFailure(ae.Reason)
				}
				if ae.Reason == ReasonInvalidToken || ae.Reason == ReasonExpiredToken {
					w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				}
				httpapi.WriteError(w, r, httpapi.Errorf(http.StatusUnauthorized, "%s", ae.Detail))
				return
			}
			httpapi.WriteError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

// IdentityKey is the rate-limit key of r's authenticated identity (see Identity.Key). It
// is meant for requests that went through Middleware.
func IdentityKey(r *http.Request) string {
	id, _ := IdentityFrom(r.Context())
	return id.Key()
}
