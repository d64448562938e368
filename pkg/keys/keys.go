// Package keys generates, stores and loads the signing keys that sign audit
// log entries and checkpoints. Every signature goes through
// github.com/sigstore/sigstore so that file keys and KMS keys behave alike.
package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/vigil-ebpf/vigil/pkg/atomicfile"
)

// Type names a key algorithm.
type Type string

// Supported key types.
const (
	ECDSAP256 Type = "ecdsa-p256" // default: ECDSA over P-256 with SHA-256, ASN.1 DER signatures
	Ed25519   Type = "ed25519"    // pure Ed25519
	RSA3072   Type = "rsa-3072"   // RSA PKCS#1 v1.5 with SHA-256
)

// Types lists the key types vigil can generate, default first.
var Types = []Type{ECDSAP256, Ed25519, RSA3072}

// File names inside a key directory.
const (
	PrivateKeyFile = "signing.key"
	PublicKeyFile  = "signing.pub"
)

// ErrPasswordRequired is returned when an encrypted key is loaded without a password.
var ErrPasswordRequired = errors.New("keys: the signing key is encrypted: set VIGIL_KEY_PASSWORD or pass --password-file")

// Generate creates a new private key of type t.
func Generate(t Type) (crypto.Signer, error) {
	switch t {
	case ECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	default:
		return nil, fmt.Errorf("keys: unknown key type %q (want one of %s)", t, typeList())
	}
}

func typeList() string {
	s := make([]string, len(Types))
	for i, t := range Types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// EncodePrivate PEM-encodes priv. With a non-empty password the key is
// encrypted the way sigstore/cosign encrypt keys (scrypt + secretbox,
// "ENCRYPTED SIGSTORE PRIVATE KEY"); with a nil password it is a plain
// PKCS#8 "PRIVATE KEY".
func EncodePrivate(priv crypto.Signer, password []byte) ([]byte, error) {
	if password == nil {
		der, err := cryptoutils.MarshalPrivateKeyToDER(priv)
		if err != nil {
			return nil, fmt.Errorf("keys: encode private key: %w", err)
		}
		return cryptoutils.PEMEncode(cryptoutils.PrivateKeyPEMType, der), nil
	}
	if len(password) == 0 {
		return nil, errors.New("keys: empty password: give a password or choose --no-password explicitly")
	}
	der, err := cryptoutils.MarshalPrivateKeyToEncryptedDER(priv, cryptoutils.StaticPasswordFunc(password))
	if err != nil {
		return nil, fmt.Errorf("keys: encrypt private key: %w", err)
	}
	return cryptoutils.PEMEncode(cryptoutils.EncryptedSigstorePrivateKeyPEMType, der), nil
}

// EncodePublic PEM-encodes a public key as SubjectPublicKeyInfo.
func EncodePublic(pub crypto.PublicKey) ([]byte, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("keys: encode public key: %w", err)
	}
	return b, nil
}

// Pair describes a key pair written to disk.
type Pair struct {
	PrivatePath string
	PublicPath  string
	Type        Type
	ID          string // see ID
}

// WritePair generates a key of type t and writes DIR/signing.key (mode 0600,
// never overwritten) and DIR/signing.pub (0644). A nil password writes the
// private key unencrypted.
func WritePair(dir string, t Type, password []byte) (Pair, error) {
	priv, err := Generate(t)
	if err != nil {
		return Pair{}, err
	}
	privPEM, err := EncodePrivate(priv, password)
	if err != nil {
		return Pair{}, err
	}
	pubPEM, err := EncodePublic(priv.Public())
	if err != nil {
		return Pair{}, err
	}
	id, err := ID(priv.Public())
	if err != nil {
		return Pair{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Pair{}, fmt.Errorf("keys: create key directory: %w", err)
	}
	p := Pair{
		PrivatePath: filepath.Join(dir, PrivateKeyFile),
		PublicPath:  filepath.Join(dir, PublicKeyFile),
		Type:        t,
		ID:          id,
	}
	if err := writeNew(p.PrivatePath, privPEM, 0o600); err != nil {
		return Pair{}, err
	}
	if err := writeNew(p.PublicPath, pubPEM, 0o644); err != nil {
		_ = os.Remove(p.PrivatePath)
		return Pair{}, err
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return Pair{}, fmt.Errorf("keys: %w", err)
	}
	return p, nil
}

// writeNew creates path exclusively so that an existing key is never replaced.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("keys: %s already exists: refusing to overwrite a key (move it away first)", path)
		}
		return fmt.Errorf("keys: create %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil { // umask may have narrowed or widened nothing, but be exact
		f.Close()
		return fmt.Errorf("keys: chmod %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("keys: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("keys: sync %s: %w", path, err)
	}
	return f.Close()
}

// ID returns the key id: the lowercase hex SHA-256 of the public key's DER
// SubjectPublicKeyInfo. It is what segment headers record and what
// `vigil keys generate` prints as the fingerprint.
func ID(pub crypto.PublicKey) (string, error) {
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "", fmt.Errorf("keys: marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// Algorithm names the signature algorithm used with pub, as recorded in
// segment headers.
func Algorithm(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("keys: ECDSA curve %s is not supported: use P-256", k.Curve.Params().Name)
		}
		return "ecdsa-p256-sha256", nil
	case ed25519.PublicKey:
		return "ed25519", nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("keys: RSA key of %d bits is too small: use at least 2048", k.N.BitLen())
		}
		return "rsa-pkcs1v15-sha256", nil
	default:
		return "", fmt.Errorf("keys: unsupported public key type %T", pub)
	}
}

// PassFunc returns the password of an encrypted private key.
type PassFunc func() ([]byte, error)

// LoadSigner loads the signer named by ref: a path to a PEM private key, or
// a KMS URI (awskms://, gcpkms://, hashivault://, azurekms://) when the
// binary was built with that provider's build tag (see docs/KEYS.md).
func LoadSigner(ctx context.Context, ref string, pass PassFunc) (signature.SignerVerifier, error) {
	if scheme, ok := kmsScheme(ref); ok {
		return loadKMS(ctx, scheme, ref)
	}
	pemBytes, err := os.ReadFile(ref)
	if err != nil {
		return nil, fmt.Errorf("keys: read signing key: %w", err)
	}
	priv, err := parsePrivate(pemBytes, pass)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", ref, err)
	}
	sv, err := signature.LoadSignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", ref, err)
	}
	if _, err := Algorithm(priv.(crypto.Signer).Public()); err != nil {
		return nil, err
	}
	return sv, nil
}

func parsePrivate(pemBytes []byte, pass PassFunc) (crypto.PrivateKey, error) {
	encrypted := strings.Contains(string(pemBytes), "ENCRYPTED")
	var pf cryptoutils.PassFunc
	if encrypted {
		if pass == nil {
			return nil, ErrPasswordRequired
		}
		pw, err := pass()
		if err != nil {
			return nil, err
		}
		if len(pw) == 0 {
			return nil, ErrPasswordRequired
		}
		pf = cryptoutils.StaticPasswordFunc(pw)
		if block, _ := pem.Decode(pemBytes); block != nil {
			if err := checkPKCS8(block); err != nil {
				return nil, err
			}
		}
	}
	priv, err := unmarshalPrivate(pemBytes, pf)
	if err != nil {
		if encrypted {
			return nil, fmt.Errorf("cannot decrypt the signing key (wrong password?): %w", err)
		}
		return nil, fmt.Errorf("not a PEM private key: %w", err)
	}
	if _, ok := priv.(crypto.Signer); !ok {
		return nil, fmt.Errorf("unsupported private key type %T", priv)
	}
	return priv, nil
}

// unmarshalPrivate calls the PEM key decoder, turning a panic (a damaged
// file it does not check for) into an error: a key file must never crash
// the agent. checkPKCS8 refuses the cases known to panic; this is the
// backstop.
func unmarshalPrivate(pemBytes []byte, pf cryptoutils.PassFunc) (priv crypto.PrivateKey, err error) {
	defer func() {
		if r := recover(); r != nil {
			priv, err = nil, fmt.Errorf("the key file is damaged (the decoder failed: %v): restore it from a backup or write a new key with vigil keys generate", r)
		}
	}()
	return cryptoutils.UnmarshalPEMToPrivateKey(pemBytes, pf)
}

// LoadVerifier reads a PEM public key file and returns a verifier for it and
// its key id.
func LoadVerifier(path string) (signature.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: read public key: %w", err)
	}
	return ParseVerifier(b)
}

// ParseVerifier parses a PEM public key.
func ParseVerifier(pemBytes []byte) (signature.Verifier, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("keys: not a PEM public key: %w", err)
	}
	if _, err := Algorithm(pub); err != nil {
		return nil, err
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("keys: load verifier: %w", err)
	}
	return v, nil
}

// PublicKey returns the public key of a sigstore signer or verifier.
func PublicKey(v signature.PublicKeyProvider) (crypto.PublicKey, error) {
	pub, err := v.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("keys: public key: %w", err)
	}
	return pub, nil
}
