-- Interview rooms (the second seed's app), kept by the `interviews`
-- projection (src/projections/interviews.rs) from the `user_interviews-*`
-- and `interview-*` streams. Both tables belong to one projection, so an AI
-- call row always finds its interview's owner.

-- The `GET /api/interviews` read model: one row per interview.
create table interviews (
    interview_id    text    not null primary key,
    user_id         text    not null,
    title           text    not null,
    job_description text    not null,
    -- JSON array of strings
    skills          text    not null,
    -- idle | ai.extracting.skills | ai.generating.message | ai.transcribing.text | ai.generating.hint
    state           text    not null,
    created_at      bigint  not null,
    updated_at      bigint  not null,
    message_count   bigint  not null,
    hints_given     bigint  not null,
    archived        bigint  not null,
    deleted         bigint  not null
);
create index interviews_by_user on interviews (user_id, created_at);

-- One row per AI call of any interview (the audit's "what was asked, when,
-- how long, how many tokens, how it ended").
create table analytics_ai_calls (
    call_id           text   not null primary key,
    interview_id      text   not null,
    user_id           text   not null,
    -- extract_skills | question | transcribe | hint
    kind              text   not null,
    model             text   not null,
    started_at        bigint not null,
    ended_at          bigint,
    latency_ms        bigint,
    input_size        bigint not null,
    prompt_tokens     bigint,
    completion_tokens bigint,
    -- 'running', 'completed', or a failure label (timeout, rate_limited, interrupted, ...)
    outcome           text   not null
);
create index analytics_ai_calls_by_user on analytics_ai_calls (user_id, model);
