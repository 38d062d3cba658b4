-- 0008_chain_search_path.sql: the hash chain trigger gets its fixed search path back.
--
-- Migration 0007 dropped `SET search_path` from prefstore.chain_event() for speed, reasoning
-- that pg_temp is never searched for functions or operators. It is searched first for type
-- names, though: a session that created a temporary type named `text` (say a domain over
-- varchar(1)) changed what the trigger's casts produced, and so the chain hashes of the events
-- it inserted (`prefstore verify` reports such events; nothing else is affected). Found in
-- review; regression test SchemaTest.ATemporaryTypeCannotChangeTheChainHash.
--
-- The clause costs nothing measurable on the trigger itself (pg_stat_user_functions, 1 writer:
-- 40-41 µs per event with it, 42-45 µs without): the saving of 0007 came from no longer
-- calling the two SQL helpers, which stay without the clause (their SQL-standard bodies were
-- parsed, types included, when they were created).
--
-- Never edit this file once released. docs/schema.md describes every object changed here.

ALTER FUNCTION prefstore.chain_event() SET search_path = pg_catalog, pg_temp;

SELECT prefstore.assign_owner();
