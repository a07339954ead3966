-- Webhook deliveries already applied, by the sender's delivery id (LiveKit's
-- `id`, `EV_…`). A redelivery of a recorded id is answered 2xx and changes
-- nothing. Rows are kept at least 24 hours (the contract); older ones are
-- pruned as new deliveries arrive.
create table webhook_deliveries (
    source      text   not null,
    delivery_id text   not null,
    received_at bigint not null,
    primary key (source, delivery_id)
);
create index webhook_deliveries_by_age on webhook_deliveries (received_at);
