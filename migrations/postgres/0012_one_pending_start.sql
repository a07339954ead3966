-- At most one queued start per event, enforced by the database: two starts
-- that both passed the "nothing is recording" check race to this insert,
-- and the loser gets a unique violation (answered 409) instead of a 202
-- whose session is later refused silently (issue #22, defect 5).
-- A stop names the session it stops (the one recording or queued when it
-- was accepted), so a stop that runs late never ends a later recording
-- (issue #22, defect 9). Stops queued before this column: null, the old rule.
alter table recording_commands add column target_session_id text;

-- Starts queued twice before this index existed: the older one stays.
update recording_commands
   set status = 'refused', last_error = 'a second start queued for the event'
 where kind = 'start' and status = 'pending'
   and command_id not in (
       select min(command_id) from recording_commands
        where kind = 'start' and status = 'pending' group by event_id);

create unique index recording_one_pending_start
    on recording_commands (event_id) where kind = 'start' and status = 'pending';
