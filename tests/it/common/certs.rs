//! Certificates the TLS tests make for themselves (rcgen): a CA, a server
//! certificate for `localhost` and 127.0.0.1 signed by it, and client
//! certificates with a URI SAN (a SPIFFE id), written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate's PEM file.
    pub pem_file: PathBuf,
}

/// A certificate and its key, as PEM files.
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    /// A CA named `name`, its certificate written to `dir/NAME-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem_file, issuer.pem()).unwrap();
        TestCa { issuer, pem_file }
    }

    /// A server certificate for `localhost` and 127.0.0.1, as `dir/FILE.pem` and `dir/FILE-key.pem`.
    pub fn server(&self, dir: &Path, file: &str) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(dir, file, params)
    }

    /// A client certificate whose URI SAN is `uri`.
    pub fn client(&self, dir: &Path, file: &str, uri: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        params
            .subject_alt_names
            .push(SanType::URI(uri.try_into().unwrap()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(dir, file, params)
    }

    fn issue(&self, dir: &Path, file: &str, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let issued = Issued {
            cert_file: dir.join(format!("{file}.pem")),
            key_file: dir.join(format!("{file}-key.pem")),
        };
        std::fs::write(&issued.cert_file, cert.pem()).unwrap();
        std::fs::write(&issued.key_file, key.serialize_pem()).unwrap();
        issued
    }
}
