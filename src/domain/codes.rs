//! Error codes: the seed's `error` / `error_description` tables (seed 002, "MitID error
//! codes", "MitID Erhverv error codes", "NemID error codes") and Vidne's own codes for
//! refusals the seeds do not name.

use crate::domain::values::Idp;

/// `error` of every seed flow error.
pub const ACCESS_DENIED: &str = "access_denied";
/// `error` of a refusal the seeds have no code for.
pub const INVALID_REQUEST: &str = "invalid_request";

pub const MITID_CPR_MATCH_FAILED: &str = "mitid_cpr_match_failed";
pub const MITID_TRANSFER_TOKEN_EXCHANGE_CODE_ALREADY_USED: &str =
    "mitid_transfer_token_exchange_code_already_used";
pub const MITID_INVALID_TRANSFER_TOKEN_CODE: &str = "mitid_invalid_transfer_token_code";
pub const MITID_TRANSACTION_TEXT_INVALID: &str = "mitid_transaction_text_invalid";
pub const MITID_TRANSACTION_TEXT_MISSING: &str = "mitid_transaction_text_missing";
pub const MITID_TRANSACTION_SIGNING_FLOW_LIMITED_TO_SIGNED_REQUEST: &str =
    "mitid_transaction_signing_flow_limited_to_signed_request";

/// Seed 002, "MitID error codes": every `error_description` with `error` = `access_denied`.
pub const MITID_ERROR_DESCRIPTIONS: &[&str] = &[
    "mitid_user_aborted",
    "mitid_no_ctx",
    "mitid_internal_error",
    "mitid_unexpected_error",
    "mitid_core_client_error",
    MITID_CPR_MATCH_FAILED,
    "mitid_timeout",
    "mitid_auth_code_already_used",
    MITID_TRANSFER_TOKEN_EXCHANGE_CODE_ALREADY_USED,
    MITID_TRANSACTION_TEXT_INVALID,
    MITID_TRANSACTION_SIGNING_FLOW_LIMITED_TO_SIGNED_REQUEST,
    "mitid_anti_forgery_validation_error",
    MITID_TRANSACTION_TEXT_MISSING,
    "mitid_identity_not_found",
    MITID_INVALID_TRANSFER_TOKEN_CODE,
];

/// Seed 002, "MitID Erhverv error codes", spelled exactly as there (one with a dot, one
/// with an underscore).
pub const MITID_ERHVERV_ERROR_DESCRIPTIONS: &[&str] =
    &["mitid_erhverv.no_identities", "mitid_erhverv_user_aborted"];

/// Seed 002, "NemID error codes": the fixed codes. The table's two families
/// (`nemid_flow_error_[error code]`, `nemid_client_flow_error_+[NemID error code]`, whose
/// example is written `nemid_srv001`) are matched by [`is_nemid_error_description`].
pub const NEMID_FIXED_ERROR_DESCRIPTIONS: &[&str] = &[
    "nemid_user_aborted",
    "nemid_flow_error_TIMESTAMP_EXPIRED",
    "nemid_unspecified_error",
];

/// An error code suffix: 1 to 64 of `A-Z a-z 0-9 _`.
fn is_code_suffix(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `code` is in the seed's NemID table: a fixed code, `nemid_flow_error_<code>`,
/// `nemid_client_flow_error_<code>`, or the table's example form `nemid_<letters><digits>`
/// (`nemid_srv001`, a NemID client code such as SRV001 in lower case).
pub fn is_nemid_error_description(code: &str) -> bool {
    if NEMID_FIXED_ERROR_DESCRIPTIONS.contains(&code) {
        return true;
    }
    if let Some(rest) = code
        .strip_prefix("nemid_client_flow_error_")
        .or_else(|| code.strip_prefix("nemid_flow_error_"))
    {
        return is_code_suffix(rest);
    }
    if let Some(rest) = code.strip_prefix("nemid_") {
        let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        let digits = &rest[letters..];
        return (2..=8).contains(&letters)
            && (1..=6).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit());
    }
    false
}

/// Whether a flow error's `error_description` is one the seeds allow for `idp`. MitID
/// Erhverv logins run through the MitID flow (seed 002, "MitID Erhverv": the MitID
/// parameters apply), so its transactions may end with a MitID code too. The seeds give
/// no table for the E-Ident IdPs and FTN: there any code of 1 to 64 `a-z 0-9 _ .` is
/// recorded as the broker reports it.
pub fn flow_error_allowed(idp: Idp, code: &str) -> bool {
    match idp {
        Idp::Mitid => MITID_ERROR_DESCRIPTIONS.contains(&code),
        Idp::MitidErhverv => {
            MITID_ERHVERV_ERROR_DESCRIPTIONS.contains(&code)
                || MITID_ERROR_DESCRIPTIONS.contains(&code)
        }
        Idp::Nemid => is_nemid_error_description(code),
        Idp::BankidNo | Idp::BankidMobileNo | Idp::BuypassNo | Idp::BankidSe | Idp::Ftn => {
            !code.is_empty()
                && code.len() <= 64
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nemid_table_patterns() {
        for ok in [
            "nemid_user_aborted",
            "nemid_flow_error_TIMESTAMP_EXPIRED",
            "nemid_flow_error_4711",
            "nemid_unspecified_error",
            "nemid_client_flow_error_SRV001",
            "nemid_srv001",
            "nemid_lock001",
        ] {
            assert!(is_nemid_error_description(ok), "{ok}");
        }
        for bad in [
            "nemid_",
            "nemid_flow_error_",
            "nemid_client_flow_error_",
            "nemid_flow_error_a b",
            "mitid_user_aborted",
            "nemid_srv",
            "nemid_001",
        ] {
            assert!(!is_nemid_error_description(bad), "{bad}");
        }
    }

    #[test]
    fn tables_per_idp() {
        assert!(flow_error_allowed(Idp::Mitid, "mitid_user_aborted"));
        assert!(!flow_error_allowed(
            Idp::Mitid,
            "mitid_erhverv_user_aborted"
        ));
        assert!(!flow_error_allowed(Idp::Mitid, "nemid_user_aborted"));
        assert!(flow_error_allowed(
            Idp::MitidErhverv,
            "mitid_erhverv.no_identities"
        ));
        assert!(flow_error_allowed(Idp::MitidErhverv, "mitid_user_aborted"));
        assert!(!flow_error_allowed(Idp::Nemid, "mitid_user_aborted"));
        assert!(flow_error_allowed(Idp::Ftn, "bank_unavailable"));
        assert!(!flow_error_allowed(Idp::Ftn, "Bank Unavailable"));
        assert_eq!(MITID_ERROR_DESCRIPTIONS.len(), 15);
    }
}
