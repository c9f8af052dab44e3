//! Creating a company with its first admin and API key (`pulseboard bootstrap`, the demo
//! company of `serve --local`, and every test's own company).

use crate::auth::apikeys::{self, KeySpec};
use crate::auth::password;
use crate::auth::records::{Company, EmailClaim, Plan, User};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::keys;
use domain::ids::new_id;
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct NewCompany {
    pub company: String,
    pub email: String,
    pub password: String,
    pub plan: String,
    pub daily_limit: Option<u64>,
    pub per_second_limit: Option<u64>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Bootstrapped {
    pub company_id: String,
    pub user_id: String,
    pub email: String,
    pub api_key: String,
}

pub async fn bootstrap(state: &AppState, input: NewCompany) -> ApiResult<Bootstrapped> {
    let Some(plan) = Plan::parse(&input.plan) else {
        return Err(ApiError::field(
            "plan",
            format!("must be one of {}", Plan::NAMES.join(", ")),
        ));
    };
    if input.company.trim().is_empty() {
        return Err(ApiError::field("company", "must not be empty"));
    }
    if !input.email.contains('@') {
        return Err(ApiError::field("email", "must be an email address"));
    }
    password::check_policy(&input.password, &input.email)?;
    let now = state.clock.now();
    let status = if plan == Plan::Trial {
        domain::CompanyStatus::Trial
    } else {
        domain::CompanyStatus::Active
    };
    let mut company = Company::new(new_id(), input.company, plan, status, now);
    company.per_second_limit = input.per_second_limit;
    company.daily_limit = input.daily_limit;
    company.user_count = 1;
    company.admin_count = Some(1);
    let email = input.email.trim().to_lowercase();
    let user = User {
        id: new_id(),
        company_id: company.id.clone(),
        email: email.clone(),
        first_name: String::new(),
        last_name: String::new(),
        password_hash: password::hash(&input.password).await?,
        roles: vec!["admin".into()],
        groups: vec![],
        external_id: None,
        date_created: now,
        last_updated: now,
        revision: 0,
        date_last_login: None,
        locked_until: None,
        session_epoch: 0,
    };
    let key = apikeys::issue(
        KeySpec {
            company_id: company.id.clone(),
            user_id: user.id.clone(),
            created_by: user.id.clone(),
            name: "bootstrap".into(),
            description: Some("created by pulseboard bootstrap".into()),
            expires_in_days: None,
            scopes: None,
        },
        now,
    )?;
    let mut tx = state.store.transaction();
    tx.create(&keys::company(&company.id), &company)?;
    tx.create(&keys::user(&company.id, &user.id), &user)?;
    tx.create(
        &keys::email(&email),
        &EmailClaim {
            company_id: company.id.clone(),
            user_id: user.id.clone(),
        },
    )?;
    for item in key.to_items() {
        tx.create_item(item)?;
    }
    tx.commit_or_conflict(&format!("email '{email}' is already registered"))
        .await?;
    Ok(Bootstrapped {
        company_id: company.id,
        user_id: user.id,
        email,
        api_key: key.secret,
    })
}
