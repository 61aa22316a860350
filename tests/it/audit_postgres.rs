//! The audit store on a real PostgreSQL: migrations, exact audit rows for a batch, no secret in any row.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::common::{postgres::TestPostgres, *};
use registrar::{
    api::pb,
    audit::entity::{registration, vendor_call},
    domain::VendorKind,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, Statement,
};

const AUDIT_TABLES: [&str; 3] = ["batches", "registrations", "vendor_calls"];

#[tokio::test]
async fn migrate_creates_the_audit_tables_and_can_run_again() {
    let postgres = TestPostgres::start_async().await;

    for run in 1..=2 {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
            .args(["migrate", "--database-url", &postgres.url])
            .env_remove("REGISTRAR_CONFIG")
            .output()
            .await
            .expect("the registrar binary runs");
        assert!(
            output.status.success(),
            "migrate run {run} exited with {}\nstdout:\n{}\nstderr:\n{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            postgres.server_log()
        );
    }

    let db = Database::connect(postgres.url.as_str()).await.unwrap();
    let tables = public_tables(&db).await;
    for table in AUDIT_TABLES {
        assert!(tables.contains(table), "no table {table} in {tables:?}");
    }
    // and they are empty: migrating wrote no row
    for table in AUDIT_TABLES {
        let dump = dump_table(&db, table).await;
        assert!(dump.is_empty(), "{table} holds {dump:?}");
    }
}

#[tokio::test]
async fn a_batch_leaves_exact_audit_rows_in_postgres_and_no_secret() {
    let postgres = TestPostgres::start_async().await;
    let simulator = start_simulator(vec![lcic_account(20)]).await;
    let mut registrar = Registrar::start_with_database(
        &lcic_target("lcic", &simulator.endpoint(), ""),
        &postgres.url,
        "",
    )
    .await;

    // 2,500 valid users with an empty id at index 1000 and a repeat of
    // pg000007 at the end (index 2501)
    let valid = users("pg", 2500);
    let mut input = valid[..1000].to_vec();
    input.push(user(""));
    input.extend_from_slice(&valid[1000..]);
    input.push(user("pg000007"));
    let (empty_index, duplicate_index) = (1000_u64, 2501_u64);
    let collected = batch_register(&mut registrar.client, request(&["lcic"], input))
        .await
        .unwrap();
    let batch_id = collected.batch_id();
    assert_eq!(collected.results.len(), 2502);

    // ground truth at the vendor: three accepted calls of 1000, 1000 and 500
    // users, each valid user once, no invalid user
    let calls = simulator.calls();
    let mut sizes = call_sizes(&calls);
    sizes.sort_unstable();
    assert_eq!(sizes, [500, 1000, 1000]);
    assert!(calls.iter().all(|call| call.accepted()), "{calls:?}");
    let sent: Vec<&str> = calls
        .iter()
        .flat_map(|call| call.user_ids.iter().map(String::as_str))
        .collect();
    assert_eq!(sent.len(), 2500);
    let valid_ids: HashSet<&str> = valid.iter().map(|user| user.user_id.as_str()).collect();
    assert_eq!(sent.iter().copied().collect::<HashSet<_>>(), valid_ids);
    let vendor_ids: BTreeMap<String, String> = simulator
        .registered(VendorKind::TencentLcic, LCIC_APP_ID)
        .into_iter()
        .map(|user| (user.origin_id, user.vendor_user_id))
        .collect();
    assert_eq!(vendor_ids.len(), 2500);

    // ground truth in PostgreSQL: one row per input (index, target)
    let db = &registrar.audit.connection();
    assert_eq!(db.get_database_backend(), DbBackend::Postgres);
    let rows = registration::Entity::find()
        .filter(registration::Column::BatchId.eq(batch_id.as_str()))
        .all(db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2502);
    let by_index: BTreeMap<u64, &registration::Model> = rows
        .iter()
        .map(|row| (u64::try_from(row.idx).unwrap(), row))
        .collect();
    assert_eq!(by_index.len(), 2502, "two rows for one input");
    assert_eq!(
        by_index.keys().copied().collect::<Vec<_>>(),
        (0..2502).collect::<Vec<_>>()
    );
    assert!(rows.iter().all(|row| row.target == "lcic"));

    // each valid user is registered exactly once, with the vendor's id
    let mut registered_per_user: BTreeMap<&str, usize> = BTreeMap::new();
    for row in rows.iter().filter(|row| row.outcome == "registered") {
        *registered_per_user.entry(row.user_id.as_str()).or_default() += 1;
        assert_eq!(
            row.vendor_user_id.as_deref(),
            Some(vendor_ids[&row.user_id].as_str())
        );
        assert_eq!(row.attempts, 1);
        assert!(row.error_message.is_none(), "{row:?}");
    }
    assert_eq!(registered_per_user.len(), 2500);
    assert!(registered_per_user.values().all(|&count| count == 1));
    assert_eq!(
        registered_per_user.keys().copied().collect::<HashSet<_>>(),
        valid_ids
    );

    // the two invalid inputs are rejected with their reason, never sent
    let empty = by_index[&empty_index];
    assert_eq!(
        (empty.user_id.as_str(), empty.outcome.as_str()),
        ("", "rejected")
    );
    assert_eq!(empty.error_code.as_deref(), Some("validation.required"));
    assert!(empty.error_message.is_some());
    let duplicate = by_index[&duplicate_index];
    assert_eq!(
        (duplicate.user_id.as_str(), duplicate.outcome.as_str()),
        ("pg000007", "rejected")
    );
    assert_eq!(
        duplicate.error_code.as_deref(),
        Some("validation.duplicate")
    );
    assert!(
        duplicate
            .error_message
            .as_deref()
            .is_some_and(|message| message.contains("index 7")),
        "{duplicate:?}"
    );
    for rejected in [empty, duplicate] {
        assert_eq!(rejected.attempts, 0);
        assert!(rejected.vendor_call_id.is_none());
    }
    assert_eq!(
        rows.iter().filter(|row| row.outcome == "rejected").count(),
        2
    );

    // one vendor-call row per call, completed, and the registrations point at them
    let vendor_calls = vendor_call::Entity::find().all(db).await.unwrap();
    assert_eq!(vendor_calls.len(), 3, "{vendor_calls:?}");
    for call in &vendor_calls {
        assert_eq!(call.target, "lcic");
        assert_eq!(call.action, "BatchRegister");
        assert_eq!(call.attempt, 1);
        assert_eq!(call.http_status, Some(200));
        assert!(call.vendor_request_id.is_some(), "{call:?}");
        assert!(call.finished_at.is_some(), "{call:?}");
        assert!(call.error_class.is_none(), "{call:?}");
        let carried = rows
            .iter()
            .filter(|row| row.vendor_call_id == Some(call.id))
            .count();
        assert_eq!(carried, usize::try_from(call.user_count).unwrap());
    }
    let mut call_sizes: Vec<i32> = vendor_calls.iter().map(|call| call.user_count).collect();
    call_sizes.sort_unstable();
    assert_eq!(call_sizes, [500, 1000, 1000]);

    // GetBatch over gRPC reports the same
    let batch = registrar.get_batch(&batch_id).await;
    assert_eq!(batch.state(), pb::BatchState::Completed);
    assert_eq!(batch.user_count, 2502);
    assert_eq!(batch.counts.len(), 1);
    let counts = &batch.counts[0];
    assert_eq!(counts.target, "lcic");
    assert_eq!(
        (counts.total, counts.registered, counts.rejected),
        (2502, 2500, 2)
    );
    assert_eq!(
        (counts.already_exists, counts.failed, counts.pending),
        (0, 0, 0)
    );
    assert!(batch.finish_time.is_some());

    // ListRegistrations pages through every row once, as PostgreSQL holds it
    let pages = registrar.list_registration_pages(&batch_id, 1000).await;
    let mut seen = BTreeSet::new();
    for listed in pages.iter().flatten() {
        assert!(seen.insert(listed.index), "index {} twice", listed.index);
        let stored = by_index[&listed.index];
        assert_eq!(listed.user_id, stored.user_id);
        let outcome = match listed.outcome() {
            pb::Outcome::Registered => "registered",
            pb::Outcome::Rejected => "rejected",
            other => panic!("unexpected outcome {other:?} at {}", listed.index),
        };
        assert_eq!(outcome, stored.outcome);
    }
    assert_eq!(seen.len(), 2502);
    assert_eq!(pages.len(), 3);

    // no secret anywhere: every row of every table, as text
    let mut dump = String::new();
    for table in public_tables(db).await {
        dump.push_str(&dump_table(db, &table).await);
    }
    assert!(
        dump.contains("pg000007") && dump.contains("BatchRegister"),
        "the dump reads the audit rows"
    );
    assert!(
        !dump.contains(LCIC_SECRET_KEY),
        "the LCIC secret key is stored in PostgreSQL"
    );

    registrar.stop().await;
}

/// The tables of the `public` schema.
async fn public_tables(db: &DatabaseConnection) -> BTreeSet<String> {
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT table_name::text AS name FROM information_schema.tables \
         WHERE table_schema = 'public'",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String>("", "name").unwrap())
    .collect()
}

/// Every row of `table`, each rendered whole as PostgreSQL's text form.
async fn dump_table(db: &DatabaseConnection, table: &str) -> String {
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        format!("SELECT row_data::text AS row_text FROM \"{table}\" AS row_data"),
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String>("", "row_text").unwrap() + "\n")
    .collect()
}
