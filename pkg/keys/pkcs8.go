package keys

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
)

// Limits on the password hashing a PKCS#8 "ENCRYPTED PRIVATE KEY" file may
// ask for (see checkPKCS8). The file chooses its own KDF cost, so without a bound a damaged
// or hostile key file makes loading run for hours (PBKDF2 with 2^31
// iterations) or allocate until the process is killed (scrypt with N =
// 2^30). The bounds are far above what openssl and the OWASP guidance use
// (PBKDF2-HMAC-SHA256: 600 000 iterations; scrypt: N = 2^17, r = 8).
const (
	maxPBKDF2Iterations = 10_000_000
	maxScryptMemory     = 256 << 20 // bytes: 128 * N * r
	maxScryptParallel   = 16
)

var (
	// Block sizes of the CBC ciphers the PKCS#8 decoder knows, by OID.
	cbcBlockSize = map[string]int{
		"2.16.840.1.101.3.4.1.2":  16, // AES-128-CBC
		"2.16.840.1.101.3.4.1.22": 16, // AES-192-CBC
		"2.16.840.1.101.3.4.1.42": 16, // AES-256-CBC
		"1.2.840.113549.3.7":      8,  // DES-EDE3-CBC
	}
	oidPBES2  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
)

// The ASN.1 of PKCS#8 EncryptedPrivateKeyInfo with PBES2 (RFC 8018) and
// its two key derivation functions (RFC 8018, RFC 7914).
type encryptedPKCS8 struct {
	Algorithm pkix.AlgorithmIdentifier
	Data      []byte
}

type pbes2Params struct {
	KDF    pkix.AlgorithmIdentifier
	Cipher pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt       []byte
	Iterations int64
}

type scryptParams struct {
	Salt                   []byte
	N, BlockSize, Parallel int64
}

// checkPKCS8 rejects a PKCS#8 "ENCRYPTED PRIVATE KEY" block that the
// decoder would trust to its harm, before any of it runs. It accepts only
// what it can check whole: PBES2 with PBKDF2 or scrypt within the limits
// above, and a CBC cipher it knows with an IV and ciphertext of the
// lengths that cipher needs (the decoder panics on others, and decrypts
// the GCM identifiers it also accepts as if they were CBC). Other blocks
// are left to their own decoders.
func checkPKCS8(block *pem.Block) error {
	if block.Type != "ENCRYPTED PRIVATE KEY" {
		return nil
	}
	const fix = "re-encrypt it, e.g. openssl pkcs8 -topk8 -v2 aes-256-cbc, or write a new key with vigil keys generate"
	if _, ok := block.Headers["DEK-Info"]; ok {
		// The legacy PEM decryption would hand the decoder parameters
		// this check never saw.
		return errors.New("PKCS#8 encrypted key is encrypted again with legacy PEM encryption (DEK-Info header): re-encrypt it as plain PKCS#8, e.g. openssl pkcs8 -topk8 -v2 aes-256-cbc")
	}
	var info encryptedPKCS8
	if _, err := asn1.Unmarshal(block.Bytes, &info); err != nil {
		return fmt.Errorf("PKCS#8 encrypted key is not valid DER (%v): the file is damaged; restore it from a backup or write a new key with vigil keys generate", err)
	}
	if !info.Algorithm.Algorithm.Equal(oidPBES2) {
		return fmt.Errorf("PKCS#8 key is encrypted with %s, not PBES2: %s", info.Algorithm.Algorithm, fix)
	}
	var pbes2 pbes2Params
	if _, err := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &pbes2); err != nil {
		return fmt.Errorf("PKCS#8 key has unreadable PBES2 parameters (%v): %s", err, fix)
	}
	bs, ok := cbcBlockSize[pbes2.Cipher.Algorithm.String()]
	if !ok {
		return fmt.Errorf("PKCS#8 key is encrypted with cipher %s, which is not AES-CBC or DES-EDE3-CBC: %s", pbes2.Cipher.Algorithm, fix)
	}
	var iv []byte
	if _, err := asn1.Unmarshal(pbes2.Cipher.Parameters.FullBytes, &iv); err != nil || len(iv) != bs {
		return fmt.Errorf("PKCS#8 key has a %d-byte IV where its cipher needs %d: the file is damaged; restore it from a backup or write a new key with vigil keys generate", len(iv), bs)
	}
	if len(info.Data) == 0 || len(info.Data)%bs != 0 {
		return fmt.Errorf("PKCS#8 key holds %d encrypted bytes, not a whole number of %d-byte blocks: the file is damaged; restore it from a backup or write a new key with vigil keys generate", len(info.Data), bs)
	}
	kdf := pbes2.KDF
	switch {
	case kdf.Algorithm.Equal(oidPBKDF2):
		var p pbkdf2Params
		if _, err := asn1.Unmarshal(kdf.Parameters.FullBytes, &p); err != nil {
			return fmt.Errorf("PKCS#8 key has unreadable PBKDF2 parameters (%v): %s", err, fix)
		}
		if p.Iterations < 1 || p.Iterations > maxPBKDF2Iterations {
			return fmt.Errorf("PKCS#8 key asks for %d PBKDF2 iterations (want 1 to %d): %s", p.Iterations, maxPBKDF2Iterations, fix)
		}
	case kdf.Algorithm.Equal(oidScrypt):
		var p scryptParams
		if _, err := asn1.Unmarshal(kdf.Parameters.FullBytes, &p); err != nil {
			return fmt.Errorf("PKCS#8 key has unreadable scrypt parameters (%v): re-encrypt it, e.g. openssl pkcs8 -topk8 -scrypt, or write a new key with vigil keys generate", err)
		}
		// Division keeps the product from overflowing.
		if p.N < 2 || p.BlockSize < 1 || p.Parallel < 1 || p.Parallel > maxScryptParallel ||
			p.N > maxScryptMemory/128/p.BlockSize {
			return fmt.Errorf("PKCS#8 key asks for scrypt N=%d r=%d p=%d (want 128*N*r at most %d bytes and p at most %d): re-encrypt it, e.g. openssl pkcs8 -topk8 -scrypt, or write a new key with vigil keys generate",
				p.N, p.BlockSize, p.Parallel, maxScryptMemory, maxScryptParallel)
		}
	default:
		return fmt.Errorf("PKCS#8 key uses key derivation %s, not PBKDF2 or scrypt: %s", kdf.Algorithm, fix)
	}
	return nil
}
