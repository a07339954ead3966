-- Several nodes on one database (src/cluster, ADR 0020): who owns each
-- live aggregate scope (`event:{id}`, `user:{id}`). `holder` is one process
-- (`{node}/{uuid}`); `epoch` grows at every change of holder; `expires_at`
-- is in the database's clock (milliseconds since the Unix epoch).
create table cluster_leases (
    scope      text   not null primary key,
    holder     text   not null,
    node       text   not null,
    url        text   not null,
    epoch      bigint not null,
    expires_at bigint not null
);
create index cluster_leases_by_holder on cluster_leases (holder);
