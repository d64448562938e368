package keys

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"
)

// fuzzPassword is the password every encrypted seed is encrypted with.
var fuzzPassword = []byte("pw")

// fuzzKey returns a fixed Ed25519 key, so the seeds cover the same code
// on every run.
func fuzzKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("vigil keys fuzz key"))
	return ed25519.NewKeyFromSeed(seed[:])
}

// pkcs8PEM returns an "ENCRYPTED PRIVATE KEY" block with PBES2 and the
// given key derivation function; the encrypted data is junk, since the
// cost check runs before any decryption.
func pkcs8PEM(t testing.TB, kdf asn1.ObjectIdentifier, params any) []byte {
	t.Helper()
	return pkcs8PEMWith(t, kdf, params, []byte("0123456789abcdef"), make([]byte, 64))
}

// pkcs8PEMWith is pkcs8PEM with an AES-256-CBC IV and ciphertext of choice.
func pkcs8PEMWith(t testing.TB, kdf asn1.ObjectIdentifier, params any, ivBytes, data []byte) []byte {
	t.Helper()
	mustRaw := func(v any) asn1.RawValue {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return asn1.RawValue{FullBytes: b}
	}
	iv := mustRaw(ivBytes)
	pbes2 := pbes2Params{
		KDF:    pkix.AlgorithmIdentifier{Algorithm: kdf, Parameters: mustRaw(params)},
		Cipher: pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, Parameters: iv},
	}
	der, err := asn1.Marshal(encryptedPKCS8{
		Algorithm: pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: mustRaw(pbes2)},
		Data:      data,
	})
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})
}

// FuzzParsePrivate feeds arbitrary bytes as the signing key file of
// `vigil agent --key`, with a password: parsePrivate must return a signer
// or an error that says what is wrong, and must not spend minutes or
// gigabytes on a key derivation the file asks for.
// Regression seeds: testdata/fuzz/FuzzParsePrivate.
func FuzzParsePrivate(f *testing.F) {
	plain, err := EncodePrivate(fuzzKey(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(plain)
	f.Add(plain[:len(plain)/2])
	f.Add([]byte(strings.Replace(string(plain), "PRIVATE KEY", "EC PRIVATE KEY", 2)))
	f.Add([]byte(strings.Replace(string(plain), "PRIVATE KEY", "ENCRYPTED SIGSTORE PRIVATE KEY", 2)))
	f.Add(pkcs8PEM(f, oidPBKDF2, pbkdf2Params{Salt: []byte("salt"), Iterations: 2048}))
	f.Add(pkcs8PEM(f, oidScrypt, scryptParams{Salt: []byte("salt"), N: 16384, BlockSize: 8, Parallel: 1}))
	f.Add([]byte(gcmKeyPEM))
	for _, name := range []string{"testdata/pkcs8-pbkdf2.pem", "testdata/pkcs8-scrypt.pem"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAAAAAAAAAAAAAAAAAAAA==\n-----END RSA PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJrZGYiOnsibmFtZSI6InNjcnlwdCJ9fQ==\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"))
	f.Add([]byte("not a key"))
	f.Fuzz(func(t *testing.T, data []byte) {
		priv, err := parsePrivate(data, func() ([]byte, error) { return fuzzPassword, nil })
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if priv == nil {
			t.Fatal("nil key and nil error")
		}
	})
}

// FuzzParseVerifier feeds arbitrary bytes as the public key file of
// `vigil verify --pubkey`: ParseVerifier must return a verifier of a
// supported key or an error that says what is wrong.
func FuzzParseVerifier(f *testing.F) {
	pub, err := EncodePublic(fuzzKey().Public())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pub)
	f.Add(pub[:len(pub)-10])
	f.Add([]byte(strings.ReplaceAll(string(pub), "PUBLIC KEY", "RSA PUBLIC KEY")))
	// A 1024-bit RSA key: parsed, then refused as too small.
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC7JHoJfg6yNzLMOWet8Z49a4KD\n0dCspMAYvo2YAMB7/wdEycocujbhJ2n/seONi+5XqTqqFkM5VBl8rmkkFPZk/7x0\nxmdsTPECSWnHK+HhoaNDFPR3j8jQhVo1laxiqcEhAHegi5cwtFosuJAvSKAFKEvy\nD43si00DQnXWrYHAEQIDAQAB\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseVerifier(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "keys: ") {
				t.Fatalf("ParseVerifier error %q does not say what is wrong", err)
			}
			return
		}
		if _, err := PublicKey(v); err != nil {
			t.Fatalf("accepted key has no public key: %v", err)
		}
	})
}

// TestCheckPKCS8 checks that a PKCS#8 key file asking for an unbounded key
// derivation, or with an IV or ciphertext the cipher cannot take, is
// refused at once with the reason, while the keys openssl writes still load.
func TestCheckPKCS8(t *testing.T) {
	pass := func() ([]byte, error) { return fuzzPassword, nil }
	tests := []struct {
		name    string
		pem     []byte
		wantErr string // "" means: loads
	}{
		{"pbkdf2 2^31-1 iterations", pkcs8PEM(t, oidPBKDF2, pbkdf2Params{Salt: []byte("s"), Iterations: 1<<31 - 1}), "PBKDF2 iterations"},
		{"pbkdf2 zero iterations", pkcs8PEM(t, oidPBKDF2, pbkdf2Params{Salt: []byte("s")}), "PBKDF2 iterations"},
		{"scrypt N=2^30", pkcs8PEM(t, oidScrypt, scryptParams{Salt: []byte("s"), N: 1 << 30, BlockSize: 8, Parallel: 1}), "scrypt N=1073741824"},
		{"scrypt overflowing r", pkcs8PEM(t, oidScrypt, scryptParams{Salt: []byte("s"), N: 2, BlockSize: 1 << 62, Parallel: 1}), "scrypt"},
		{"scrypt p=2^20", pkcs8PEM(t, oidScrypt, scryptParams{Salt: []byte("s"), N: 16384, BlockSize: 8, Parallel: 1 << 20}), "p at most"},
		{"scrypt negative r", pkcs8PEM(t, oidScrypt, scryptParams{Salt: []byte("s"), N: 16384, BlockSize: -8, Parallel: 1}), "scrypt"},
		{"iv of 3 bytes", pkcs8PEMWith(t, oidPBKDF2, pbkdf2Params{Salt: []byte("s"), Iterations: 2048}, []byte("abc"), make([]byte, 64)), "3-byte IV"},
		{"ciphertext of 63 bytes", pkcs8PEMWith(t, oidPBKDF2, pbkdf2Params{Salt: []byte("s"), Iterations: 2048}, make([]byte, 16), make([]byte, 63)), "63 encrypted bytes"},
		{"no ciphertext", pkcs8PEMWith(t, oidPBKDF2, pbkdf2Params{Salt: []byte("s"), Iterations: 2048}, make([]byte, 16), nil), "0 encrypted bytes"},
		{"pbkdf2 in bounds, wrong data", pkcs8PEM(t, oidPBKDF2, pbkdf2Params{Salt: []byte("s"), Iterations: 2048}), "cannot decrypt"},
		{"legacy PEM encryption around PKCS#8", legacyWrapped(t), "DEK-Info"},
		// The decoder takes the AES-GCM identifiers and decrypts them as
		// CBC, panicking on a GCM-sized IV: refused before it runs.
		{"aes-256-gcm", []byte(gcmKeyPEM), "not AES-CBC"},
		{"not DER", []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), "not valid DER"},
		{"openssl pbkdf2", mustRead(t, "testdata/pkcs8-pbkdf2.pem"), ""},
		{"openssl scrypt", mustRead(t, "testdata/pkcs8-scrypt.pem"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parsePrivate(tt.pem, pass)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("parsePrivate = %v; want a key", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("parsePrivate = %v; want an error containing %q", err, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), "cannot decrypt") && !strings.Contains(err.Error(), "re-encrypt it") && !strings.Contains(err.Error(), "write a new key"):
				t.Fatalf("parsePrivate = %v; want it to say what to do", err)
			}
		})
	}
	if _, err := parsePrivate(mustRead(t, "testdata/pkcs8-pbkdf2.pem"), nil); !errors.Is(err, ErrPasswordRequired) {
		t.Errorf("parsePrivate without password = %v; want ErrPasswordRequired", err)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// legacyWrapped returns an "ENCRYPTED PRIVATE KEY" block that also carries
// legacy PEM encryption headers.
func legacyWrapped(t *testing.T) []byte {
	b, _ := pem.Decode(pkcs8PEM(t, oidPBKDF2, pbkdf2Params{Salt: []byte("s"), Iterations: 2048}))
	b.Headers = map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00000000000000000000000000000000"}
	return pem.EncodeToMemory(b)
}

// gcmKeyPEM names AES-256-GCM with a 12-byte IV: it crashed the decoder.
const gcmKeyPEM = `-----BEGIN ENCRYPTED PRIVATE KEY-----
MIGBMD0GCSqGSIb3DQEFDTAwMBMGCSqGSIb3DQEFDDAGBAFzAgEBMBkGCWCGSAFl
AwQBLgQMAAAAAAAAAAAAAAAABEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
-----END ENCRYPTED PRIVATE KEY-----
`
