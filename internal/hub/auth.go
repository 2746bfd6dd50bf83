package hub

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/killswitch-dev/killswitch/internal/hub/store"
)

// Roles: a viewer sees everything; a responder also queues actions.
const (
	RoleViewer    = "viewer"
	RoleResponder = "responder"
)

const (
	pbkdf2Iterations = 600_000 // OWASP's 2023 figure for PBKDF2-HMAC-SHA256
	sessionTTL       = 12 * time.Hour
	cookieName       = "killswitch_session"
)

// HashPassword returns a PBKDF2-SHA256 hash with a random salt.
func HashPassword(pw string) (string, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	key, err := pbkdf2.Key(sha256.New, pw, salt, pbkdf2Iterations, 32)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("pbkdf2-sha256$%d$%s$%s", pbkdf2Iterations, base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

func checkPassword(hash, pw string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return false
	}
	iter, err := strconv.Atoi(parts[1])
	salt, err2 := base64.RawStdEncoding.DecodeString(parts[2])
	want, err3 := base64.RawStdEncoding.DecodeString(parts[3])
	if err != nil || err2 != nil || err3 != nil || iter < 1 || iter > 10_000_000 {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, pw, salt, iter, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}

// AddUser creates or updates an operator account.
func (h *Hub) AddUser(ctx context.Context, name, password, role string) error {
	if role != RoleViewer && role != RoleResponder {
		return fmt.Errorf("role must be %s or %s", RoleViewer, RoleResponder)
	}
	if name == "" || len(name) > 64 || strings.ContainsAny(name, " \t\r\n<>\"'") {
		return errors.New("user name: 1 to 64 characters, no spaces or quotes")
	}
	if len(password) < 12 {
		return errors.New("password: at least 12 characters")
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	if err := h.Store.PutUser(ctx, store.User{Name: name, Hash: hash, Role: role}); err != nil {
		return err
	}
	h.audit(ctx, "cli", "user-set", name, role)
	return nil
}

// dummyHash makes a sign-in for an unknown user cost as much as a real one.
var dummyHash, _ = HashPassword("not a password of anyone")

func (h *Hub) login(w http.ResponseWriter, r *http.Request) {
	ip := clientIP(r)
	lim := h.limiter(h.perIP, ip, loginRate, 5)
	if lim.Tokens() < 1 {
		httpError(w, http.StatusTooManyRequests, "too many failed sign-ins; wait a few seconds")
		return
	}
	var req struct{ User, Password string }
	if !decode(w, r, &req) {
		return
	}
	u, err := h.Store.User(r.Context(), req.User)
	hash := u.Hash
	if err != nil {
		hash = dummyHash
	}
	if !checkPassword(hash, req.Password) || err != nil {
		lim.Allow() // spend a token only on failure
		h.audit(r.Context(), "web:"+ip, "login-failed", cut(req.User, 64), "")
		httpError(w, http.StatusUnauthorized, "wrong user name or password")
		return
	}
	tok := make([]byte, 32)
	rand.Read(tok)
	raw := base64.RawURLEncoding.EncodeToString(tok)
	if err := h.Store.CreateSession(r.Context(), hashSecret(raw), u.Name, time.Now().Add(sessionTTL)); err != nil {
		httpError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: raw, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL.Seconds())})
	h.audit(r.Context(), u.Name, "login", "", ip)
	writeJSON(w, map[string]string{"user": u.Name, "role": u.Role})
}

func (h *Hub) logout(w http.ResponseWriter, r *http.Request, u store.User) {
	if c, err := r.Cookie(cookieName); err == nil {
		h.Store.DeleteSession(r.Context(), hashSecret(c.Value))
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	h.audit(r.Context(), u.Name, "logout", "", "")
	w.WriteHeader(http.StatusNoContent)
}

// operator admits a signed-in operator with at least role. State-changing
// requests must carry the X-Killswitch header, which a cross-site form
// cannot send (with SameSite=Strict cookies, a second line against CSRF).
func (h *Hub) operator(role string, next func(http.ResponseWriter, *http.Request, store.User)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(cookieName)
		if err != nil {
			httpError(w, http.StatusUnauthorized, "sign in first")
			return
		}
		u, err := h.Store.Session(r.Context(), hashSecret(c.Value), time.Now())
		if err != nil {
			httpError(w, http.StatusUnauthorized, "session expired; sign in again")
			return
		}
		if r.Method != http.MethodGet && r.Header.Get("X-Killswitch") != "1" {
			httpError(w, http.StatusForbidden, "missing X-Killswitch header")
			return
		}
		if role == RoleResponder && u.Role != RoleResponder {
			httpError(w, http.StatusForbidden, "the %s role cannot do this; a responder can", u.Role)
			return
		}
		next(w, r, u)
	}
}
