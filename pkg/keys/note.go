package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	tnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Signed-note algorithm identifiers (the first byte of a note verifier key).
// ECDSA and Ed25519 are the ones standard tooling knows; RSA is vigil's own.
const (
	noteAlgEd25519 = 0x01 // golang.org/x/mod/sumdb/note
	noteAlgECDSA   = 0x02 // transparency-dev/formats note.NewECDSAVerifier
	noteAlgRSA     = 0xff // vigil-specific: PKCS#1 v1.5 SHA-256 over the note text
)

// NoteVerifierKey returns the signed-note verifier key string
// "<name>+<hash hex>+<base64(alg || key)>" for pub. For ECDSA and Ed25519 the
// string is what transparency-dev/formats and golang.org/x/mod/sumdb/note
// accept, so witnesses and standard tools can check vigil checkpoints.
func NoteVerifierKey(name string, pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return note.NewEd25519VerifierKey(name, k)
	case *ecdsa.PublicKey, *rsa.PublicKey:
		der, err := cryptoutils.MarshalPublicKeyToDER(pub)
		if err != nil {
			return "", fmt.Errorf("keys: marshal public key: %w", err)
		}
		alg := byte(noteAlgECDSA)
		hash := ecdsaKeyHash(der)
		if _, ok := k.(*rsa.PublicKey); ok {
			alg = noteAlgRSA
			hash = rsaKeyHash(name, der)
		}
		return fmt.Sprintf("%s+%08x+%s", name, hash, base64.StdEncoding.EncodeToString(append([]byte{alg}, der...))), nil
	default:
		return "", fmt.Errorf("keys: unsupported public key type %T", pub)
	}
}

// ecdsaKeyHash is the key hash transparency-dev/formats uses for ECDSA note
// keys: the first four bytes of SHA-256 over the DER public key.
func ecdsaKeyHash(der []byte) uint32 {
	h := sha256.Sum256(der)
	return binary.BigEndian.Uint32(h[:])
}

// rsaKeyHash follows the sumdb convention of hashing name, newline, key.
func rsaKeyHash(name string, der []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{noteAlgRSA})
	h.Write(der)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// NoteVerifier returns a signed-note verifier for pub under name. ECDSA and
// Ed25519 use the standard implementations.
func NoteVerifier(name string, pub crypto.PublicKey) (note.Verifier, error) {
	vkey, err := NoteVerifierKey(name, pub)
	if err != nil {
		return nil, err
	}
	if k, ok := pub.(*rsa.PublicKey); ok {
		der, _ := cryptoutils.MarshalPublicKeyToDER(pub)
		sv, err := signature.LoadRSAPKCS1v15Verifier(k, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		return &noteKey{name: name, hash: rsaKeyHash(name, der), v: sv}, nil
	}
	v, err := tnote.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("keys: note verifier: %w", err)
	}
	return v, nil
}

// NoteSigner adapts a sigstore signer to a signed-note signer under name, so
// checkpoints are signed by the same key (file or KMS) as entries.
func NoteSigner(name string, sv signature.SignerVerifier) (note.Signer, error) {
	pub, err := PublicKey(sv)
	if err != nil {
		return nil, err
	}
	v, err := NoteVerifier(name, pub)
	if err != nil {
		return nil, err
	}
	return &noteKey{name: name, hash: v.KeyHash(), s: sv}, nil
}

// noteKey is a note.Signer (and, for RSA, a note.Verifier) backed by sigstore.
type noteKey struct {
	name string
	hash uint32
	s    signature.Signer
	v    signature.Verifier
}

func (k *noteKey) Name() string    { return k.name }
func (k *noteKey) KeyHash() uint32 { return k.hash }

func (k *noteKey) Sign(msg []byte) ([]byte, error) {
	return k.s.SignMessage(bytes.NewReader(msg))
}

func (k *noteKey) Verify(msg, sig []byte) bool {
	return k.v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)) == nil
}
