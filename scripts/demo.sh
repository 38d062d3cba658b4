#!/usr/bin/env bash
# prefstore's demo: a calendar assistant whose services keep their users' preferences in
# prefstore (calendar events themselves stay in Google Calendar). Runs on prefstore's own local
# server, in a database of its own (prefstore_demo) that it recreates each time.
set -uo pipefail
cli=${1:-build/cli/prefstore}
unset PREFSTORE_DATABASE_URL PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE

bold=$'\033[1m'; dim=$'\033[2m'; off=$'\033[0m'
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
quoted() { local out="" a; for a in "$@"; do out+=" $(printf '%q' "$a")"; done; printf '%s' "$out"; }
show() { printf '%s$ prefstore%s%s\n' "$dim" "$(quoted "$@")" "$off"; "$cli" "$@"; }
# A command that must fail: show its message and exit code.
refused() {
  printf '%s$ prefstore%s%s\n' "$dim" "$(quoted "$@")" "$off"
  local rc=0
  "$cli" "$@" || rc=$?
  printf '%s-> refused with exit code %d%s\n' "$dim" "$rc" "$off"
  [ "$rc" -ne 0 ] || { echo "demo: expected a refusal"; exit 1; }
}

step "prefstore local start: a PostgreSQL 15 cluster of its own, unix socket only"
"$cli" local start || exit 1
base=$("$cli" local url) || exit 1
psql -q "$base dbname=postgres" -c 'SET client_min_messages = warning' \
  -c 'DROP DATABASE IF EXISTS prefstore_demo' -c 'CREATE DATABASE prefstore_demo' || exit 1
export PREFSTORE_DATABASE_URL="${base/dbname=\'prefstore\'/dbname='prefstore_demo'}"

set -e
step "Migrations: numbered SQL files compiled into the tool"
show migrate
show migrate --status

step "The platform team defines the preferences the calendar services may store"
export PREFSTORE_ACTOR=grace@platform
show define calendar.timezone --type string --default UTC \
  --pattern '[A-Za-z_]+(/[A-Za-z_+-]+)*' --description "IANA time zone of the user's calendar" \
  --source prefstore-admin --reason "calendar launch"
show define calendar.working_hours.start --type string --default 09:00 \
  --pattern '([01][0-9]|2[0-3]):[0-5][0-9]' --description "Start of the working day (HH:MM)" \
  --source prefstore-admin
show define calendar.working_hours.end --type string --default 17:00 \
  --pattern '([01][0-9]|2[0-3]):[0-5][0-9]' --description "End of the working day (HH:MM)" \
  --source prefstore-admin
show define calendar.default_meeting_minutes --type int --default 30 --min 5 --max 480 \
  --description "Length of a new meeting" --source prefstore-admin
show define calendar.reminder_minutes --type int --default 10 --allowed 0,5,10,15,30,60 \
  --description "Reminder before each meeting" --source prefstore-admin
show define notifications.channels --type string_list --default email --allowed email,push,sms \
  --max-items 3 --description "Where reminders are sent" --source prefstore-admin
show definitions

step "Users change their preferences through several services"
export PREFSTORE_ACTOR=ada@example.com
show set ada calendar.timezone Europe/London --source calendar-web --reason "settings page"
show set ada calendar.working_hours.start 08:30 --source calendar-web --reason "settings page"
show set ada notifications.channels email,push --source calendar-mobile --reason "enabled push"
export PREFSTORE_ACTOR=linus@example.com
show set linus calendar.timezone Europe/Helsinki --source calendar-web
show set linus calendar.default_meeting_minutes 25 --source calendar-web --reason "speedy meetings"
export PREFSTORE_ACTOR=scheduling-assistant
show set ada calendar.default_meeting_minutes 45 --source scheduling-assistant \
  --reason "learned from accepted invitations" --correlation-id sched-2026-11-30-001

step "A conflict: the mobile app read Ada's preferences at version 3, the assistant wrote since"
export PREFSTORE_ACTOR=ada@example.com
refused set ada calendar.timezone America/New_York --source calendar-mobile --expect-version 3
show set ada calendar.timezone America/New_York --source calendar-mobile --expect-version 4 \
  --reason "travelling"

step "Rejected values: each error names the key, the value and the broken rule"
refused set ada calendar.default_meeting_minutes 600 --source calendar-web
refused set ada calendar.working_hours.end 25:00 --source calendar-web
refused set ada notifications.channels email,pigeon --source calendar-mobile
refused set ada calendar.mood sunny --source calendar-web

step "Back to the default"
show reset ada calendar.working_hours.start --source calendar-web --reason "back to office hours"

step "What the services read: the user's values and the defaults"
show get ada
show get linus
show get ada calendar.timezone --json

step "The audit trail: who changed what, when, from which service and why"
show history ada
show history '$def:calendar.default_meeting_minutes'

step "An asynchronous read model: how many users hold each value (preference_value_counts)"
show projections status
show projections catch-up
show projections status
psql -q "$PREFSTORE_DATABASE_URL" -c "SELECT key, value, users FROM prefstore.preference_value_counts ORDER BY key, users DESC"
step "Rebuild it from the log into shadow tables, then swap them in (readers never see it empty)"
show projections rebuild preference_value_counts --batch-size 5

step "Time travel: Ada's preferences as they were before she went travelling"
before_travel=$(psql -qtA "$PREFSTORE_DATABASE_URL" -c "SELECT to_char((recorded_at - interval '1 microsecond') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM prefstore.events WHERE stream_id = 'ada' AND payload->>'value' = 'America/New_York'")
show get ada --as-of "$before_travel"
show diff ada --from "$before_travel" --to now

step "Point-in-time restore: put her time zone back, appending one PreferencesRestored event"
show restore ada --to "$before_travel" --keys calendar.timezone --dry-run
export PREFSTORE_ACTOR=support@example.com
show restore ada --to "$before_travel" --keys calendar.timezone --reason "ticket 4711: back home"
show history ada
show snapshot create --all
show snapshot list

step "Backups: a consistent file of the log and the snapshots, checked chunk by chunk"
backup_dir=$(mktemp -d /tmp/prefstore-demo-backup.XXXXXX)
show backup create "$backup_dir/demo.psb"
show backup verify "$backup_dir/demo.psb"
cp "$backup_dir/demo.psb" "$backup_dir/damaged.psb"
printf '\xff' | dd of="$backup_dir/damaged.psb" bs=1 seek=700 conv=notrunc 2>/dev/null
refused backup verify "$backup_dir/damaged.psb"

step "Recovery: restore the backup into a new, empty database and read Ada back"
psql -q "$base dbname=postgres" -c 'SET client_min_messages = warning' \
  -c 'DROP DATABASE IF EXISTS prefstore_demo_restored' -c 'CREATE DATABASE prefstore_demo_restored'
PREFSTORE_DATABASE_URL="${base/dbname=\'prefstore\'/dbname='prefstore_demo_restored'}" \
  "$cli" backup restore "$backup_dir/demo.psb"
PREFSTORE_DATABASE_URL="${base/dbname=\'prefstore\'/dbname='prefstore_demo_restored'}" \
  "$cli" get ada
rm -rf "$backup_dir"

step "Audit queries: filter the trail by key prefix, actor, source or request; page with a cursor"
show history --key-prefix calendar. --limit 5
show history --source calendar-web --format csv
show history --correlation-id sched-2026-11-30-001 --format jsonl

step "Tamper evidence: every stream carries a hash chain; verify recomputes it and the read models"
show verify --all
psql -q "$PREFSTORE_DATABASE_URL" -c "SET client_min_messages = warning" \
  -c "ALTER TABLE prefstore.events DISABLE TRIGGER events_append_only" \
  -c "UPDATE prefstore.events SET payload = jsonb_set(payload, '{value}', '60') WHERE stream_id = 'linus' AND stream_version = 2" \
  -c "ALTER TABLE prefstore.events ENABLE TRIGGER events_append_only"
printf '%s(a superuser edited one of Linus'"'"'s events behind the trigger)%s\n' "$dim" "$off"
refused verify linus

step "Right to erasure: Linus leaves; his events go through the one privileged path, recorded in \$audit"
show erase linus --reason "GDPR request 2026-118" --actor dpo@example.com
show get linus
show history '$audit'
show verify --all --no-projections

step "Monitoring: a health check with an exit code, and metrics in the Prometheus text format"
show projections catch-up
show status
show set grace calendar.reminder_minutes 15 --source calendar-mobile
printf '%s(one new event; the asynchronous projections have not applied it yet)%s\n' "$dim" "$off"
refused status --max-lag-events 0
show projections catch-up
show status --max-lag-events 0 --json
printf '%s$ prefstore metrics | grep -E "^prefstore_(up|log_events|streams|projection_lag_events)"%s\n' "$dim" "$off"
"$cli" metrics | grep -E '^prefstore_(up|log_events|streams|projection_lag_events)'

printf '\nThe local server keeps running for the next command; stop it with: %s local stop\n' "$cli"
