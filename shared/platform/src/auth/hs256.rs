//! The only cryptography `jsonwebtoken` is given: HS256 (HMAC-SHA-256, the one algorithm
//! Pulseboard signs and accepts), from the RustCrypto `hmac` and `sha2` crates. Its
//! `rust_crypto` provider would link RSA, ECDSA (P-256, P-384) and Ed25519 into every
//! function as well, code no request can reach since only HS256 verifies.

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

struct Hs256(HmacSha256);

impl Hs256 {
    fn new(secret: &[u8]) -> Result<Self, Error> {
        HmacSha256::new_from_slice(secret)
            .map(Hs256)
            .map_err(|_| ErrorKind::InvalidKeyFormat.into())
    }
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, message: &[u8], tag: &Vec<u8>) -> Result<(), signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        // In constant time.
        mac.verify_slice(tag).map_err(signature::Error::from_source)
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256::new(key.try_get_hmac_secret()?)?)),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256::new(key.try_get_hmac_secret()?)?)),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    // No JWKs are made or read.
    jwk_utils: JwkUtils::new_unimplemented(),
};

/// Makes HS256 the process's `jsonwebtoken` provider (before the first token is signed or
/// verified; again is harmless, and so is a provider installed first, e.g. by a test).
pub fn install() {
    let _ = PROVIDER.install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_hmac_sha256_and_only_that_tag_and_algorithm_verify() {
        // RFC 4231, test case 2.
        let key = EncodingKey::from_secret(b"Jefe");
        let message = b"what do ya want for nothing?";
        let tag = signer(&Algorithm::HS256, &key)
            .unwrap()
            .try_sign(message)
            .unwrap();
        assert_eq!(
            hex::encode(&tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let check = verifier(&Algorithm::HS256, &DecodingKey::from_secret(b"Jefe")).unwrap();
        assert!(check.verify(message, &tag).is_ok());
        let mut wrong = tag.clone();
        wrong[0] ^= 1;
        assert!(check.verify(message, &wrong).is_err());
        for other in [Algorithm::HS512, Algorithm::RS256, Algorithm::ES256] {
            assert!(signer(&other, &key).is_err());
        }
    }
}
