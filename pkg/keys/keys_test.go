package keys

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

func TestWriteLoadSignVerify(t *testing.T) {
	ctx := context.Background()
	for _, typ := range Types {
		for _, pw := range [][]byte{nil, []byte("correct horse")} {
			name := string(typ) + map[bool]string{true: "/plain", false: "/encrypted"}[pw == nil]
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				p, err := WritePair(dir, typ, pw)
				if err != nil {
					t.Fatal(err)
				}
				st, err := os.Stat(p.PrivatePath)
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode().Perm() != 0o600 {
					t.Errorf("private key mode = %o; want 600", st.Mode().Perm())
				}
				sv, err := LoadSigner(ctx, p.PrivatePath, func() ([]byte, error) { return pw, nil })
				if err != nil {
					t.Fatalf("LoadSigner = %v", err)
				}
				msg := []byte("hash of an entry, 32 bytes long!")
				sig, err := sv.SignMessage(bytes.NewReader(msg))
				if err != nil {
					t.Fatal(err)
				}
				v, err := LoadVerifier(p.PublicPath)
				if err != nil {
					t.Fatal(err)
				}
				if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil {
					t.Errorf("VerifySignature = %v; want nil", err)
				}
				pub, _ := v.PublicKey()
				if id, _ := ID(pub); id != p.ID {
					t.Errorf("ID(public key) = %s; want %s", id, p.ID)
				}
				if _, err := WritePair(dir, typ, pw); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
					t.Errorf("second WritePair = %v; want refusal to overwrite", err)
				}
				if pw != nil {
					if _, err := LoadSigner(ctx, p.PrivatePath, nil); !errors.Is(err, ErrPasswordRequired) {
						t.Errorf("LoadSigner without password = %v; want ErrPasswordRequired", err)
					}
					_, err := LoadSigner(ctx, p.PrivatePath, func() ([]byte, error) { return []byte("wrong"), nil })
					if err == nil || !strings.Contains(err.Error(), "wrong password") {
						t.Errorf("LoadSigner with wrong password = %v; want a wrong-password error", err)
					}
				}
			})
		}
	}
}

func TestLoadErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.key")
	os.WriteFile(garbage, []byte("not a key"), 0o600)
	tests := []struct {
		ref  string
		want string
	}{
		{filepath.Join(dir, "missing.key"), "no such file"},
		{garbage, "not a PEM private key"},
		{"awskms:///arn:aws:kms:eu-west-1:111122223333:key/abc", "rebuild with `go build -tags kms_aws`"},
		{"gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", "kms_gcp"},
		{"hashivault://vigil", "kms_hashivault"},
		{"azurekms://vault.example/key", "kms_azure"},
	}
	for _, tt := range tests {
		_, err := LoadSigner(ctx, tt.ref, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LoadSigner(%q) = %v; want error containing %q", tt.ref, err, tt.want)
		}
	}
	if _, err := ParseVerifier([]byte("nope")); err == nil {
		t.Error("ParseVerifier(garbage) succeeded")
	}
	if _, err := Generate("dsa-1024"); err == nil || !strings.Contains(err.Error(), "ecdsa-p256") {
		t.Errorf("Generate(dsa-1024) = %v; want unknown type listing the supported ones", err)
	}
}

// Checkpoints signed through NoteSigner must verify with the standard
// verifiers, so witnesses and other tooling can read them.
func TestNoteInterop(t *testing.T) {
	for _, typ := range Types {
		t.Run(string(typ), func(t *testing.T) {
			priv, err := Generate(typ)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			pemBytes, _ := EncodePrivate(priv, nil)
			path := filepath.Join(dir, "k")
			os.WriteFile(path, pemBytes, 0o600)
			sv, err := LoadSigner(context.Background(), path, nil)
			if err != nil {
				t.Fatal(err)
			}
			const origin = "vigil/host-a"
			signer, err := NoteSigner(origin, sv)
			if err != nil {
				t.Fatal(err)
			}
			msg, err := note.Sign(&note.Note{Text: origin + "\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, signer)
			if err != nil {
				t.Fatal(err)
			}
			var v note.Verifier
			if typ == RSA3072 {
				v, err = NoteVerifier(origin, priv.Public())
			} else {
				var vkey string
				vkey, err = NoteVerifierKey(origin, priv.Public())
				if err == nil {
					v, err = tnote.NewVerifier(vkey) // the standard implementation, not ours
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
				t.Errorf("note.Open = %v; want the signature to verify", err)
			}
			bad := bytes.Replace(msg, []byte("\n5\n"), []byte("\n6\n"), 1)
			if _, err := note.Open(bad, note.VerifierList(v)); err == nil {
				t.Error("note.Open of an altered checkpoint succeeded")
			}
		})
	}
}
