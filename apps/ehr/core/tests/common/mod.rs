//! The `ehr` chaincode's test fixture: the chaincode over an in-memory state
//! (`medchain_chaincode::memory`, writes kept only on success as the executor keeps them), and
//! helpers.
#![allow(dead_code)]

use medchain_chaincode::memory::MemState;
use medchain_chaincode::{Chaincode, ChaincodeError};
use medchain_ehr::chaincode::HospitalProfile;
use medchain_ehr::{Ehr, EhrOp, EhrQuery};
use medchain_types::{codec, sha256, SecretKey};

pub struct T {
    pub cc: Ehr,
    pub w: MemState,
}

impl T {
    pub fn new(admin: &SecretKey) -> T {
        T {
            cc: Ehr::new([admin.public()]),
            w: MemState {
                time_ms: 1_000_000,
                ..MemState::default()
            },
        }
    }

    /// Runs one transaction; like the executor, writes only on success.
    pub fn tx(&mut self, from: &SecretKey, op: EhrOp) -> Result<(), ChaincodeError> {
        self.w.height += 1;
        self.w.time_ms += 1_000;
        let tx = sha256(&self.w.height.to_le_bytes());
        self.w
            .execute(&self.cc, from.public(), tx, &Ehr::payload(&op))
            .map(|_| ())
    }

    /// `hospital` registers as `name` and `admin` approves it.
    pub fn approved_hospital(&mut self, admin: &SecretKey, hospital: &SecretKey, name: &str) {
        self.tx(hospital, EhrOp::RegisterHospital(profile(name)))
            .unwrap();
        let hospital = hospital.public();
        self.tx(admin, EhrOp::ApproveHospital { hospital }).unwrap();
    }

    /// `hospital` registers `doctor`.
    pub fn doctor(&mut self, hospital: &SecretKey, doctor: &SecretKey) {
        let op = EhrOp::RegisterDoctor {
            doctor: doctor.public(),
            profile_commitment: sha256(b"d"),
        };
        self.tx(hospital, op).unwrap();
    }

    pub fn q<R: serde::de::DeserializeOwned>(&self, q: EhrQuery) -> R {
        codec::decode(&self.cc.query(&self.w, &Ehr::request(&q)).unwrap()).unwrap()
    }
}

pub fn k(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

pub fn forbidden(r: Result<(), ChaincodeError>) -> bool {
    matches!(r, Err(ChaincodeError::Forbidden(_)))
}

pub fn profile(name: &str) -> HospitalProfile {
    HospitalProfile {
        name: name.into(),
        address: "1 Main St".into(),
        contact: "+1 555 0100".into(),
        treatments: vec!["Cardiology".into(), "Diabetes care".into()],
    }
}
