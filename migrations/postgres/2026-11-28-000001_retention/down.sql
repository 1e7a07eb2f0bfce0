DROP INDEX login_attempts_at;
DROP INDEX oauth_states_used;
DROP TABLE job_runs;
