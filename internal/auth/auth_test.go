package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/auth"
)

const (
	aliceKey = "alice-key-0123456789abcdef"
	bobKey   = "bob-key-0123456789abcdef"
	secret   = "0123456789abcdef0123456789abcdef-hs256"
)

func newAuth(t *testing.T, cfg auth.Config) *auth.Authenticator {
	t.Helper()
	cfg.Enabled = true
	a, err := auth.NewAuthenticator(cfg)
	require.NoError(t, err)
	return a
}

func request(headers ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/read/k", nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	return r
}

func digest(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	require.NoError(t, err)
	return s
}

func claims(sub string, exp time.Duration) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(exp))}
}

func pemPublic(t *testing.T, key crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestAPIKeys(t *testing.T) {
	a := newAuth(t, auth.Config{
		APIKeys:      []string{"alice:" + aliceKey},
		APIKeyHashes: []string{"bob:" + digest(bobKey)},
	})
	var failures []string
	a.OnFailure = func(reason string) { failures = append(failures, reason) }
	tests := []struct {
		name    string
		req     *http.Request
		id      string
		reason  string
		details string
	}{
		{"configured key", request("X-API-Key", aliceKey), "alice", "", ""},
		{"configured digest", request("X-API-Key", bobKey), "bob", "", ""},
		{"wrong key", request("X-API-Key", aliceKey+"x"), "", auth.ReasonInvalidKey, auth.DetailInvalidKey},
		{"a prefix of a key", request("X-API-Key", aliceKey[:10]), "", auth.ReasonInvalidKey, auth.DetailInvalidKey},
		{"empty key", request("X-API-Key", ""), "", auth.ReasonInvalidKey, auth.DetailInvalidKey},
		{"the development key outside development mode", request("X-API-Key", auth.DevAPIKey), "", auth.ReasonInvalidKey, auth.DetailInvalidKey},
		{"no credentials", request(), "", auth.ReasonMissing, auth.DetailInvalidKey},
		{"X-Client-ID is no credential", request("X-Client-ID", "alice"), "", auth.ReasonMissing, auth.DetailInvalidKey},
		{"a bearer token while JWTs are off", request("Authorization", "Bearer "+aliceKey), "", auth.ReasonMissing, auth.DetailInvalidKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Authenticate(tc.req)
			if tc.reason == "" {
				require.NoError(t, err)
				assert.Equal(t, auth.Identity{Method: auth.MethodAPIKey, ID: tc.id}, id)
				assert.Equal(t, "key:"+tc.id, id.Key())
				return
			}
			var ae *auth.Error
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, tc.reason, ae.Reason)
			assert.Equal(t, tc.details, ae.Detail)
		})
	}

	// Through the middleware: 401 in the original's shape, the identity in the context.
	var seen auth.Identity
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = auth.IdentityFrom(r.Context())
		w.WriteHeader(http.StatusNoContent)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, request("X-API-Key", "nope"))
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.JSONEq(t, `{"detail":"Invalid API key"}`, rec.Body.String())
	assert.Equal(t, auth.ReasonInvalidKey, failures[len(failures)-1])
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, request("X-API-Key", bobKey))
	assert.Equal(t, http.StatusNoContent, rec.Code)
	assert.Equal(t, "bob", seen.ID)
}

func TestDevelopmentMode(t *testing.T) {
	a := newAuth(t, auth.Config{DevMode: true})
	id, err := a.Authenticate(request("X-API-Key", auth.DevAPIKey))
	require.NoError(t, err)
	assert.Equal(t, "dev", id.ID)
	assert.True(t, a.DevMode())
}

func TestConfiguration(t *testing.T) {
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	publicKey := pemPublic(t, edPub) // a valid key: only the not-both rule can refuse it below
	tests := []struct {
		name string
		cfg  auth.Config
		ok   bool
	}{
		{"nothing configured refuses to start", auth.Config{Enabled: true}, false},
		{"disabled needs nothing", auth.Config{Enabled: false}, true},
		{"the original's API_KEY", auth.Config{Enabled: true, APIKey: aliceKey}, true},
		{"a short key", auth.Config{Enabled: true, APIKeys: []string{"a:short"}}, false},
		{"a short API_KEY", auth.Config{Enabled: true, APIKey: "short"}, false},
		{"a key without id", auth.Config{Enabled: true, APIKeys: []string{aliceKey}}, false},
		{"an empty id", auth.Config{Enabled: true, APIKeys: []string{":" + aliceKey}}, false},
		{"one id twice", auth.Config{Enabled: true, APIKeys: []string{"a:" + aliceKey, "a:" + bobKey}}, false},
		{"a digest that is not SHA-256 hex", auth.Config{Enabled: true, APIKeyHashes: []string{"a:abc"}}, false},
		{"JWT only", auth.Config{Enabled: true, JWTSecret: secret}, true},
		{"a short JWT secret", auth.Config{Enabled: true, JWTSecret: "short"}, false},
		{"a secret and a public key", auth.Config{Enabled: true, JWTSecret: secret, JWTPublicKey: publicKey}, false},
		{"a public key alone", auth.Config{Enabled: true, JWTPublicKey: publicKey}, true},
		{"a public key that is none", auth.Config{Enabled: true, JWTPublicKey: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}, false},
		{"a public key file that is missing", auth.Config{Enabled: true, JWTPublicKey: "/nonexistent/key.pem"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.NewAuthenticator(tc.cfg)
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

func TestDisabled(t *testing.T) {
	a, err := auth.NewAuthenticator(auth.Config{Enabled: false})
	require.NoError(t, err)
	r := request()
	r.RemoteAddr = "192.0.2.7:5555"
	id, err := a.Authenticate(r)
	require.NoError(t, err)
	assert.Equal(t, auth.Identity{Method: auth.MethodAnonymous, ID: "192.0.2.7"}, id)
	assert.Equal(t, "ip:192.0.2.7", id.Key())
	r.RemoteAddr = "[2001:db8::1]:5555"
	id, _ = a.Authenticate(r)
	assert.Equal(t, "2001:db8::1", id.ID)
	for _, bare := range []string{"2001:db8::1", "192.0.2.7"} { // as RealIP sets it from a proxy header
		r.RemoteAddr = bare
		id, _ = a.Authenticate(r)
		assert.Equal(t, bare, id.ID)
	}
}

func TestJWTHS256(t *testing.T) {
	a := newAuth(t, auth.Config{JWTSecret: secret, APIKeys: []string{"alice:" + aliceKey}, JWTIssuer: "dblayers", JWTAudience: "l10"})
	key := []byte(secret)
	good := jwt.RegisteredClaims{Subject: "user-42", Issuer: "dblayers", Audience: jwt.ClaimStrings{"l10"},
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}
	with := func(f func(c *jwt.RegisteredClaims)) jwt.RegisteredClaims { c := good; f(&c); return c }

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)

	tests := []struct {
		name   string
		token  string
		reason string
	}{
		{"valid", sign(t, jwt.SigningMethodHS256, key, good), ""},
		{"expired", sign(t, jwt.SigningMethodHS256, key, with(func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute))
		})), auth.ReasonExpiredToken},
		{"no expiry", sign(t, jwt.SigningMethodHS256, key, with(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil })), auth.ReasonInvalidToken},
		{"no subject", sign(t, jwt.SigningMethodHS256, key, with(func(c *jwt.RegisteredClaims) { c.Subject = "" })), auth.ReasonInvalidToken},
		{"wrong issuer", sign(t, jwt.SigningMethodHS256, key, with(func(c *jwt.RegisteredClaims) { c.Issuer = "evil" })), auth.ReasonInvalidToken},
		{"wrong audience", sign(t, jwt.SigningMethodHS256, key, with(func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"l9"} })), auth.ReasonInvalidToken},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, key, with(func(c *jwt.RegisteredClaims) {
			c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour))
		})), auth.ReasonInvalidToken},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte(secret+"x"), good), auth.ReasonInvalidToken},
		{"another HMAC algorithm", sign(t, jwt.SigningMethodHS512, key, good), auth.ReasonInvalidToken},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good), auth.ReasonInvalidToken},
		{"RS256 with some private key", sign(t, jwt.SigningMethodRS256, rsaKey, good), auth.ReasonInvalidToken},
		{"garbage", "not.a.token", auth.ReasonInvalidToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Authenticate(request("Authorization", "Bearer "+tc.token))
			if tc.reason == "" {
				require.NoError(t, err)
				assert.Equal(t, auth.Identity{Method: auth.MethodJWT, ID: "user-42"}, id)
				assert.Equal(t, "jwt:user-42", id.Key())
				return
			}
			var ae *auth.Error
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, tc.reason, ae.Reason)
		})
	}

	// A present X-API-Key decides, even next to a valid token.
	_, err = a.Authenticate(request("X-API-Key", "wrong", "Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, key, good)))
	assert.Error(t, err)

	// The middleware's answers for tokens.
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, request("Authorization", "Bearer "+tests[1].token))
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.JSONEq(t, `{"detail":"Token expired"}`, rec.Body.String())
	assert.Equal(t, `Bearer error="invalid_token"`, rec.Header().Get("WWW-Authenticate"))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, request("Authorization", "bearer "+tests[0].token))
	assert.Equal(t, http.StatusNoContent, rec.Code, "the scheme is case-insensitive")
}

func TestJWTPublicKeys(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)

	tests := []struct {
		name   string
		public crypto.PublicKey
		alg    string
		method jwt.SigningMethod
		key    any
	}{
		{"RS256", &rsaKey.PublicKey, "RS256", jwt.SigningMethodRS256, rsaKey},
		{"EdDSA", edPub, "EdDSA", jwt.SigningMethodEdDSA, edKey},
		{"ES256", &ecKey.PublicKey, "ES256", jwt.SigningMethodES256, ecKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The key from a file, as JWT_PUBLIC_KEY=/path/to/key.pem.
			path := filepath.Join(t.TempDir(), "key.pem")
			require.NoError(t, os.WriteFile(path, []byte(pemPublic(t, tc.public)), 0o600))
			a := newAuth(t, auth.Config{JWTPublicKey: path})
			alg, ok := a.JWT()
			require.True(t, ok)
			assert.Equal(t, tc.alg, alg)

			id, err := a.Authenticate(request("Authorization", "Bearer "+sign(t, tc.method, tc.key, claims("svc", time.Hour))))
			require.NoError(t, err)
			assert.Equal(t, "svc", id.ID)

			_, err = a.Authenticate(request("Authorization", "Bearer "+sign(t, tc.method, tc.key, claims("svc", -time.Hour))))
			var ae *auth.Error
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, auth.ReasonExpiredToken, ae.Reason)

			// The classic confusion: an HMAC token "signed" with the public key's bytes.
			forged := sign(t, jwt.SigningMethodHS256, []byte(pemPublic(t, tc.public)), claims("svc", time.Hour))
			_, err = a.Authenticate(request("Authorization", "Bearer "+forged))
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, auth.ReasonInvalidToken, ae.Reason)
		})
	}

	// The PEM text itself works too.
	a := newAuth(t, auth.Config{JWTPublicKey: pemPublic(t, edPub)})
	_, err = a.Authenticate(request("Authorization", "Bearer "+sign(t, jwt.SigningMethodEdDSA, edKey, claims("svc", time.Hour))))
	assert.NoError(t, err)

	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	_, err = auth.NewAuthenticator(auth.Config{Enabled: true, JWTPublicKey: pemPublic(t, &small.PublicKey)})
	assert.Error(t, err, "RSA keys under 2048 bits are refused")
}
