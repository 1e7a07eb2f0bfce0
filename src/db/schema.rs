//! The one Diesel schema both backends share (MultiConnection's common types only).

diesel::table! {
    orders (out_trade_no) {
        out_trade_no -> Text,
        merchant_order_id -> Text,
        amount_fen -> BigInt,
        description -> Text,
        attach -> Nullable<Text>,
        state -> Text,
        sign_type -> Text,
        openid -> Nullable<Text>,
        client_ip -> Nullable<Text>,
        prepay_id -> Nullable<Text>,
        prepay_created_at -> Nullable<Timestamp>,
        transaction_id -> Nullable<Text>,
        paid_fen -> Nullable<BigInt>,
        paid_at -> Nullable<Timestamp>,
        paid_after_close -> Integer,
        refunded_fen -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        expires_at -> Timestamp,
        closed_at -> Nullable<Timestamp>,
        last_queried_at -> Nullable<Timestamp>,
        refund_reserved_fen -> BigInt,
        query_attempts -> Integer,
        next_query_at -> Nullable<Timestamp>,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        webhook_url -> Nullable<Text>,
        return_url -> Nullable<Text>,
        prepay_app -> Nullable<Text>,
    }
}

diesel::table! {
    order_events (id) {
        id -> BigInt,
        out_trade_no -> Text,
        kind -> Text,
        from_state -> Nullable<Text>,
        to_state -> Nullable<Text>,
        source -> Text,
        detail -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    notify_log (id) {
        id -> BigInt,
        kind -> Text,
        received_at -> Timestamp,
        remote_addr -> Nullable<Text>,
        out_trade_no -> Nullable<Text>,
        transaction_id -> Nullable<Text>,
        verdict -> Text,
        reason -> Text,
        raw_body -> Text,
        reply -> Text,
    }
}

diesel::table! {
    exceptions (id) {
        id -> BigInt,
        kind -> Text,
        dedupe_key -> Text,
        out_trade_no -> Nullable<Text>,
        detail -> Text,
        created_at -> Timestamp,
        resolved_at -> Nullable<Timestamp>,
        resolved_by -> Nullable<Text>,
        resolution_note -> Nullable<Text>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        name -> Text,
        token_hash -> Text,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        scope -> Text,
    }
}

diesel::table! {
    api_idempotency_keys (id) {
        id -> BigInt,
        principal -> Text,
        idem_key -> Text,
        request_hash -> Text,
        status_code -> Nullable<Integer>,
        response_body -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    oauth_states (nonce) {
        nonce -> Text,
        used_at -> Timestamp,
    }
}

diesel::table! {
    staff_users (id) {
        id -> BigInt,
        username -> Text,
        password_hash -> Text,
        role -> Text,
        session_version -> BigInt,
        must_change_password -> Integer,
        disabled -> Integer,
        failed_logins -> Integer,
        locked_until -> Nullable<Timestamp>,
        last_login_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    login_attempts (id) {
        id -> BigInt,
        username -> Text,
        ip -> Text,
        succeeded -> Integer,
        attempted_at -> Timestamp,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> Timestamp,
        actor -> Text,
        action -> Text,
        out_trade_no -> Nullable<Text>,
        target -> Nullable<Text>,
        detail -> Text,
        remote_addr -> Nullable<Text>,
    }
}

diesel::table! {
    refunds (out_refund_no) {
        out_refund_no -> Text,
        out_trade_no -> Text,
        amount_fen -> BigInt,
        reason -> Text,
        state -> Text,
        refund_id -> Nullable<Text>,
        requested_by -> Text,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        succeeded_at -> Nullable<Timestamp>,
        check_attempts -> Integer,
        next_check_at -> Nullable<Timestamp>,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    reconciliation_runs (bill_date) {
        bill_date -> Text,
        state -> Text,
        attempts -> Integer,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        next_attempt_at -> Nullable<Timestamp>,
        bill_rows -> BigInt,
        bill_paid_count -> BigInt,
        bill_paid_fen -> BigInt,
        bill_refund_count -> BigInt,
        bill_refund_fen -> BigInt,
        local_paid_count -> BigInt,
        local_paid_fen -> BigInt,
        matched -> BigInt,
        findings -> BigInt,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    reconciliation_findings (id) {
        id -> BigInt,
        bill_date -> Text,
        kind -> Text,
        item_key -> Text,
        out_trade_no -> Nullable<Text>,
        detail -> Text,
        resolution -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    webhook_events (id) {
        id -> BigInt,
        dedupe_key -> Text,
        event_type -> Text,
        out_trade_no -> Text,
        url -> Text,
        payload -> Text,
        state -> Text,
        attempts -> Integer,
        next_attempt_at -> Nullable<Timestamp>,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        created_at -> Timestamp,
        delivered_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> BigInt,
        event_id -> BigInt,
        attempted_at -> Timestamp,
        status_code -> Nullable<Integer>,
        error -> Nullable<Text>,
        duration_ms -> BigInt,
        response_snippet -> Nullable<Text>,
    }
}

diesel::table! {
    platform_certificates (mch_id) {
        mch_id -> Text,
        body -> Text,
        fetched_at -> Timestamp,
    }
}

diesel::table! {
    job_runs (name) {
        name -> Text,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        last_finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    alerts (id) {
        id -> BigInt,
        alert_key -> Text,
        kind -> Text,
        title -> Text,
        body -> Text,
        link -> Nullable<Text>,
        occurred_at -> Timestamp,
        created_at -> Timestamp,
        state -> Text,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        next_attempt_at -> Nullable<Timestamp>,
        sent_at -> Nullable<Timestamp>,
        summarized_by -> Nullable<Text>,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    alert_cursors (name) {
        name -> Text,
        since -> Timestamp,
    }
}

diesel::joinable!(order_events -> orders (out_trade_no));
diesel::joinable!(webhook_attempts -> webhook_events (event_id));
diesel::joinable!(refunds -> orders (out_trade_no));
diesel::allow_tables_to_appear_in_same_query!(
    orders,
    order_events,
    notify_log,
    exceptions,
    api_tokens,
    api_idempotency_keys,
    oauth_states,
    staff_users,
    login_attempts,
    audit_log,
    refunds,
    reconciliation_runs,
    reconciliation_findings,
    webhook_events,
    webhook_attempts,
    job_runs,
    platform_certificates,
    alerts,
    alert_cursors
);
