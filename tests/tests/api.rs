//! End-to-end tests over HTTP against DynamoDB Local and s3s-fs (`make test` starts them).
//! One test binary; each test bootstraps a company of its own.

mod api {
    mod accounts;
    mod addressing;
    mod alerts;
    mod api_doc;
    mod audit;
    mod clients;
    mod credentials;
    mod dashboards;
    mod datasources;
    mod errors;
    mod events;
    mod grants;
    mod held;
    mod keys;
    mod klips;
    mod limits;
    mod notifications;
    mod openapi;
    mod paging;
    mod permissions;
    mod planted;
    mod pushes;
    mod races;
    mod reports;
    mod schedules;
    mod sizes;
    mod statuses;
    mod table;
    mod template;
    mod tokens;
}
