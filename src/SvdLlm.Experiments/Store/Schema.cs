namespace SvdLlm.Experiments.Store;

/// <summary>
/// The results database's schema as an ordered list of migrations; migration i (1-based) moves the database
/// from <c>PRAGMA user_version</c> i−1 to i. Migrations are only ever appended, never edited, so a database
/// written by any earlier version opens with this one.
/// </summary>
/// <remarks>
/// A <b>cell</b> is one (model, calibration, method, ratio) point of a matrix; its key is the content hash
/// of everything that decides its numbers. The uncompressed model is the cell with method "original" and
/// ratio 0. Metrics are keyed by (cell, task, metric), so re-recording a result is an idempotent upsert.
/// </remarks>
public static class Schema
{
    public static IReadOnlyList<string> Migrations { get; } =
    [
        """
        CREATE TABLE runs (
            run_id        INTEGER PRIMARY KEY AUTOINCREMENT,
            started_utc   TEXT NOT NULL,
            ended_utc     TEXT,
            status        TEXT NOT NULL,            -- running | finished | failed | interrupted
            git_commit    TEXT NOT NULL,
            git_dirty     INTEGER NOT NULL,
            machine       TEXT NOT NULL,
            os            TEXT NOT NULL,
            dotnet        TEXT NOT NULL,
            threads       INTEGER NOT NULL,
            blas          TEXT NOT NULL,
            packages_json TEXT NOT NULL,            -- {"YamlDotNet": "16.3.0", ...}
            matrix_path   TEXT NOT NULL,
            matrix_sha256 TEXT NOT NULL,
            shard         TEXT NOT NULL             -- "1/1", "2/4"
        );
        CREATE TABLE cells (
            cell_key         TEXT PRIMARY KEY,
            matrix_name      TEXT NOT NULL,
            model            TEXT NOT NULL,         -- the matrix's model name
            model_key        TEXT NOT NULL,         -- content hash of the model weights/config/tokenizer
            method           TEXT NOT NULL,         -- "original" for the uncompressed model
            ratio            REAL NOT NULL,         -- fraction of linear parameters removed; 0 for original
            calibration_json TEXT,                  -- dataset, samples, seq_len, seed (NULL for original)
            calibration_key  TEXT,
            config_json      TEXT NOT NULL,         -- the whole resolved cell, for provenance
            run_id           INTEGER NOT NULL REFERENCES runs(run_id),
            created_utc      TEXT NOT NULL
        );
        CREATE TABLE metrics (
            cell_key    TEXT NOT NULL REFERENCES cells(cell_key),
            task        TEXT NOT NULL,              -- wikitext2, arc_easy, demo_ppl_brown, efficiency, ...
            metric      TEXT NOT NULL,              -- ppl, acc, acc_norm, prefill_tokens_per_s, ...
            value       REAL NOT NULL,
            stderr      REAL,
            n           INTEGER NOT NULL,           -- items, or predicted tokens for perplexity
            protocol    TEXT NOT NULL,
            run_id      INTEGER NOT NULL REFERENCES runs(run_id),
            created_utc TEXT NOT NULL,
            PRIMARY KEY (cell_key, task, metric)
        );
        CREATE TABLE compression (
            cell_key              TEXT PRIMARY KEY REFERENCES cells(cell_key),
            linear_params_before  INTEGER NOT NULL,
            linear_params_after   INTEGER NOT NULL,
            model_params_before   INTEGER NOT NULL,
            model_params_after    INTEGER NOT NULL,
            achieved_linear_ratio REAL NOT NULL,
            achieved_model_ratio  REAL NOT NULL,
            largest_svd           TEXT,
            largest_svd_seconds   REAL,
            notes_json            TEXT NOT NULL     -- clipping, jitter, fallbacks
        );
        CREATE TABLE matrix_stats (
            cell_key         TEXT NOT NULL REFERENCES cells(cell_key),
            name             TEXT NOT NULL,         -- model.layers.3.self_attn.q_proj
            layer            INTEGER NOT NULL,
            matrix_type      TEXT NOT NULL,         -- the V2 group: q_proj, k_proj, ..., down_proj
            out_features     INTEGER NOT NULL,
            in_features      INTEGER NOT NULL,
            rank             INTEGER NOT NULL,
            ratio            REAL NOT NULL,         -- allocated fraction removed from this matrix
            theoretical_loss REAL,
            measured_loss    REAL,
            note             TEXT,
            PRIMARY KEY (cell_key, name)
        );
        CREATE TABLE timings (
            cell_key TEXT NOT NULL REFERENCES cells(cell_key),
            stage    TEXT NOT NULL,                 -- calibration, allocation, truncation, write, eval:<task>
            seconds  REAL NOT NULL,
            run_id   INTEGER NOT NULL REFERENCES runs(run_id),
            PRIMARY KEY (cell_key, stage)
        );
        CREATE INDEX metrics_task ON metrics(task, metric);
        CREATE INDEX cells_model ON cells(model, method, ratio);
        """,
        // v2: what the pipeline needs to resume. An evaluation is done when its row carries the task key (the
        // hash of the task's data content and protocol parameters), so changing a task's limit re-evaluates it
        // instead of keeping a stale number under the same (cell, task). artifacts: every computed artifact
        // once, with its wall time (the stage totals of a run come from here).
        """
        CREATE TABLE evaluations (
            cell_key    TEXT NOT NULL REFERENCES cells(cell_key),
            task        TEXT NOT NULL,
            task_key    TEXT NOT NULL,
            params_json TEXT NOT NULL,          -- data path, limit, seq_len, batch_size
            seconds     REAL NOT NULL,
            run_id      INTEGER NOT NULL REFERENCES runs(run_id),
            created_utc TEXT NOT NULL,
            PRIMARY KEY (cell_key, task)
        );
        CREATE TABLE artifacts (
            artifact_key TEXT NOT NULL,
            kind         TEXT NOT NULL,         -- model | calibration | compressed | evaluation
            seconds      REAL NOT NULL,
            detail       TEXT NOT NULL,
            run_id       INTEGER NOT NULL REFERENCES runs(run_id),
            created_utc  TEXT NOT NULL,
            PRIMARY KEY (artifact_key, kind)
        );
        ALTER TABLE runs ADD COLUMN stage TEXT NOT NULL DEFAULT 'all';
        ALTER TABLE runs ADD COLUMN log_path TEXT;
        ALTER TABLE runs ADD COLUMN error TEXT;
        """,
        // v3: the decoder linears' stored bytes before and after, the axis on which SVD and quantization compare at
        // equal memory (NULL for cells compressed before v3).
        """
        ALTER TABLE compression ADD COLUMN linear_bytes_before INTEGER;
        ALTER TABLE compression ADD COLUMN linear_bytes_after INTEGER;
        """,
        // v4: training curves of methods that train while compressing (SVD-LLM's LoRA recovery: stage lora_u, then
        // lora_v), the loss after every optimizer step.
        """
        CREATE TABLE training_curves (
            cell_key TEXT NOT NULL REFERENCES cells(cell_key),
            stage    TEXT NOT NULL,
            step     INTEGER NOT NULL,
            loss     REAL NOT NULL,
            PRIMARY KEY (cell_key, stage, step)
        );
        """,
    ];
}
