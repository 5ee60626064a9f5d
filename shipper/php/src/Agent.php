<?php
/**
 * One request's agent: starts the profiler at the first line, gathers SQL and
 * context while the request runs, and at shutdown decides whether to keep the
 * request, builds its record and hands it to the spool.
 *
 * Architecture invariant: nothing here throws, warns or prints into the
 * application, and nothing changes its error handlers, output, headers or
 * status. Every entry point from the outside is wrapped in
 * try/catch(\Throwable); filesystem calls run under Util::mute(). Known
 * failures swallowed there: unreadable or broken config, missing extensions,
 * a spool directory that is missing, unwritable, read-only or full, JSON
 * encoding errors, and profilers that fail to start or stop.
 */

namespace BitvilleApm;

final class Agent
{
    const VERSION = '0.1.0';

    /** Error types that end a request; other "last errors" are just noise. */
    const FATAL_TYPES = [
        E_ERROR => 'E_ERROR',
        E_PARSE => 'E_PARSE',
        E_CORE_ERROR => 'E_CORE_ERROR',
        E_COMPILE_ERROR => 'E_COMPILE_ERROR',
        E_USER_ERROR => 'E_USER_ERROR',
        E_RECOVERABLE_ERROR => 'E_RECOVERABLE_ERROR',
    ];

    /** Extra time a record over the budget may take for its compact profile. */
    const BUDGET_EXTRA_NS = 2000000;
    /** Statements a record over the budget keeps: the heaviest. */
    const BUDGET_QUERIES = 20;
    /** Statement shapes a record over the budget lists. */
    const BUDGET_FINGERPRINTS = 50;
    /** Statement shapes a summary record lists. */
    const SUMMARY_FINGERPRINTS = 10;

    const JSON_FLAGS = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE
        | JSON_PARTIAL_OUTPUT_ON_ERROR;

    /** @var Agent|null The running request's agent; null when the agent is off. */
    private static $current;
    /** @var string|null This request's correlation ID, made on first use even when off. */
    private static $correlationId;

    /** @var Config */
    public $config;
    /** @var SqlRecorder|null Made on the first statement: most requests that are not kept need none. */
    private $sql;
    /** @var Redactor|null Made on first use, for the same reason. */
    private $redactor;
    /** @var Spool|null Made when a record is about to be written. */
    private $spool;
    /** @var \ExcimerProfiler|null Excimer, when it is the profiler: driven from here, no wrapper. */
    private $excimer;
    /** @var int hrtime (ns) just before Excimer's timer started: its ticks are due from there. */
    private $excimerStartNs = 0;
    /** @var int|null The draw that staggered Excimer's first tick (null: no need to know). */
    private $excimerDraw;
    /** @var Profiler|null xhprof or tideways_xhprof, when one of them is the profiler. */
    private $profiler;
    /** @var int hrtime (ns) when boot() began. */
    private $bootNs;
    /** @var int|null The request's zero (hrtime ns), worked out on first use: see startNs(). */
    private $startNs;
    /** @var array|null getrusage() at the start. */
    private $startUsage;
    /** @var array Redacted custom context. */
    private $context = [];
    /** @var int The agent's own time so far, in ns. */
    private $overheadNs = 0;
    /** @var bool */
    private $finished = false;

    /**
     * Called by bitville-apm.php on include, with no arguments: loads the
     * config and, when the agent is on, starts it for this request and
     * registers finish() to run at shutdown. Returns the agent, or null when
     * it is off. Tests and the benchmark pass a config and no shutdown hook
     * (through start()) and call finish() themselves.
     *
     * @return Agent|null
     */
    public static function boot(?Config $config = null, $registerShutdown = true)
    {
        try {
            if ($config === null) {
                if (self::$current !== null) {
                    return null; // Included twice under different paths.
                }
                $config = Config::load();
                if (!$config->enabled || $config->problem !== null) {
                    return null;
                }
            }
            // Everything here, and in finish() up to the keep decision, is paid
            // by every request, and after the application ran it all runs from
            // cold CPU caches, where each call costs microseconds: so objects
            // only kept requests need (redactor, SQL recorder, spool) are made on
            // first use, and the path has as few calls as it can.
            // No constructor (one call less): only this method makes an Agent.
            $agent = new self();
            $bootNs = hrtime(true);
            $agent->bootNs = $bootNs;
            $agent->config = $config;
            if ($config->profilerEnabled && $config->profiler !== 'none') {
                $kind = $config->profiler === 'excimer' && class_exists('ExcimerProfiler', false)
                    ? 'excimer' : Profiler::resolve($config->profiler);
                if ($kind === 'excimer') {
                    // Without it, no profile for this request; timing, SQL and metadata go on.
                    $started = Profiler::startExcimer($config->periodMs, $config->maxStackDepth,
                        $config->excimerStop === 'between_ticks');
                    if ($started !== null) {
                        list($agent->excimer, $agent->excimerStartNs, $agent->excimerDraw) = $started;
                    }
                } elseif ($kind !== null) {
                    $agent->profiler = Profiler::start($kind);
                }
            }
            // CPU time of the request needs the usage at its start, since which
            // request will be kept is not known yet. Taken right after the
            // profiler's timer syscalls, it is cheaper than before them.
            $agent->startUsage = function_exists('getrusage') ? getrusage() : null;
            self::$current = $agent;
            if ($registerShutdown) {
                // finish() runs after the script ended, even after exit() or a
                // fatal error, and lets nothing escape to the application.
                register_shutdown_function([$agent, 'finish']);
            }
            $agent->overheadNs = hrtime(true) - $bootNs;
            return $agent;
        } catch (\Throwable $e) {
            self::$current = null;
            return null;
        }
    }

    /**
     * Starts the agent for this request with a given config, without the
     * shutdown hook unless asked (tests and the benchmark).
     *
     * @return Agent|null
     */
    public static function start(Config $config, $registerShutdown)
    {
        return self::boot($config, $registerShutdown);
    }

    /** The running agent, or null when it is off. */
    public static function current()
    {
        return self::$current;
    }

    /** Forgets the current request (tests and the benchmark run many in one process). */
    public static function reset()
    {
        self::$current = null;
        self::$correlationId = null;
    }

    /** This request's correlation ID (UUID v4), the same for every call. */
    public static function correlationId()
    {
        if (self::$correlationId === null) {
            self::$correlationId = Util::uuid4();
        }
        return self::$correlationId;
    }

    /** Adds a custom context value, redacted and bounded on the way in. */
    public static function addContext($key, $value)
    {
        $agent = self::$current;
        if ($agent === null) {
            return;
        }
        $t0 = hrtime(true);
        try {
            $key = Util::truncate(is_scalar($key) ? (string) $key : '', 128);
            if ($key === '') {
                return;
            }
            if (!isset($agent->context[$key]) && count($agent->context) >= $agent->config->maxKeys) {
                return;
            }
            $redactor = $agent->redactor();
            $agent->context[$key] = $redactor->isSecretKey($key) ? Redactor::MASK : $redactor->value($value);
        } catch (\Throwable $e) {
            // A value we cannot copy is left out.
        } finally {
            $agent->overheadNs += hrtime(true) - $t0;
        }
    }

    /** This request's statements, made on the first one. */
    public function sql()
    {
        if ($this->sql === null) {
            $this->sql = new SqlRecorder($this->config, $this->redactor(), $this->startNs());
        }
        return $this->sql;
    }

    /** The redactor for this request's values, made on first use. */
    public function redactor()
    {
        if ($this->redactor === null) {
            $c = $this->config;
            $this->redactor = new Redactor($c->redactPatterns, $c->maxValueLength, $c->maxKeys);
        }
        return $this->redactor;
    }

    /** The spool this request's record goes to, made on first use. */
    public function spool()
    {
        if ($this->spool === null) {
            $c = $this->config;
            $this->spool = new Spool($c->spoolDir, $c->stateDir, $c->breakerFailures, $c->breakerCooldownS);
        }
        return $this->spool;
    }

    /** Adds time spent in capture hooks (SQL) to the agent's own time. */
    public function charge($ns)
    {
        $this->overheadNs += $ns;
    }

    /** Whether the agent still has time left in its budget for optional work. */
    public function withinBudget()
    {
        return $this->overheadNs < $this->config->timeoutMs * 1e6;
    }

    /**
     * The request's zero (hrtime ns): boot time minus how long before it the
     * SAPI took the request (REQUEST_TIME_FLOAT), before PHP started it and
     * this file was included, which is the request's time too (for a cheap
     * page, most of it). That part is left out when unknown or implausible
     * (a clock step, or over a second).
     *
     * Worked out on first use (the first statement, or finish()), not in
     * boot(): it takes arithmetic on floats, and on some CPUs a request's
     * first floating-point operation in PHP code makes everything after it
     * slower (9 % on the benchmark's integer loop on the test VM, whoever
     * runs it: README, "Benchmark"), which boot() would charge to a page
     * that does none.
     */
    private function startNs()
    {
        if ($this->startNs === null) {
            $this->startNs = $this->bootNs;
            if (isset($_SERVER['REQUEST_TIME_FLOAT'])) {
                $before = microtime(true) - (float) $_SERVER['REQUEST_TIME_FLOAT']
                    - (hrtime(true) - $this->bootNs) / 1e9;
                if ($before > 0 && $before < 1) {
                    $this->startNs -= (int) ($before * 1e9);
                }
            }
        }
        return $this->startNs;
    }

    /**
     * Ends the request: stops the profiler, applies the keep rule and writes
     * the record. Runs once; later calls return null.
     *
     * @return array{status: string, line: string|null} status is one of
     *   not_kept | written | written_trimmed (over the time budget) |
     *   spool_full | breaker_open | write_failed | no_project | encode_failed
     */
    public function finish()
    {
        if ($this->finished) {
            return null;
        }
        $this->finished = true;
        $t0 = hrtime(true);
        $result = ['status' => 'not_kept', 'line' => null];
        try {
            // Up to the keep decision nothing touches the filesystem, so the
            // request that is not kept (most of them) skips the error-handler
            // swap; everything after it runs under Util::mute().
            $elapsedNs = $t0 - $this->startNs();
            $durationMs = ($elapsedNs > 0 ? $elapsedNs : 0) / 1e6;
            // Always stop the profiler, kept or not, so it never outlives the request.
            $raw = null;
            if ($this->excimer !== null) {
                try {
                    // Between two ticks: a tick in flight when the timer is
                    // deleted kills Excimer < 1.2.4 if the process exits next.
                    Profiler::stopExcimer($this->excimer, $this->excimerStartNs, $this->config->periodMs,
                        $this->excimerDraw);
                    $raw = $this->excimer;
                } catch (\Throwable $e) {
                    $this->excimer = null;
                }
            } elseif ($this->profiler !== null) {
                $raw = $this->profiler->stop();
            }
            $last = error_get_last();
            $error = $last !== null && isset($last['type'], self::FATAL_TYPES[$last['type']])
                ? $this->fatalError($last) : null;
            $full = $durationMs >= $this->config->thresholdMs || $error !== null;
            $weight = 1.0;
            if (!$full) {
                $rate = $this->config->sampleRate;
                if ($rate <= 0) {
                    return $result;
                }
                // random_int() from the CSPRNG (mt_rand() would shift the
                // application's seeded sequence); inline, as this runs for
                // every fast request. Without entropy the request is not sampled.
                try {
                    $draw = $rate < 1 ? random_int(0, 999999) / 1e6 : 0;
                } catch (\Throwable $e) {
                    $draw = 1;
                }
                if ($draw >= $rate) {
                    return $result;
                }
                $weight = 1 / $rate;
            }
            Util::mute();
            try {
                $result = $this->finishMuted($t0, $durationMs, $raw, $full, $weight, $error);
            } finally {
                Util::unmute();
            }
        } catch (\Throwable $e) {
            $result = ['status' => 'encode_failed', 'line' => null];
        } finally {
            if (self::$current === $this) {
                self::$current = null;
            }
            // The profilers go now, not when the request's objects are freed:
            // the registered callback keeps this object alive until then.
            $this->excimer = null;
            $this->profiler = null;
            $this->startUsage = null;
        }
        return $result;
    }

    private function finishMuted($t0, $durationMs, $raw, $full, $weight, $error)
    {
        if ($error !== null && strpos($error['message'], 'Allowed memory size') === 0) {
            // The request died of memory; give the agent room to finish, and
            // put the limit back after, for the application's later shutdown
            // functions.
            $limit = ini_get('memory_limit');
            ini_set('memory_limit', '-1');
            try {
                return $this->finishRecord($t0, $durationMs, $raw, $full, $weight, $error);
            } finally {
                ini_set('memory_limit', is_string($limit) ? $limit : '128M');
            }
        }
        return $this->finishRecord($t0, $durationMs, $raw, $full, $weight, $error);
    }

    /**
     * Builds and writes the record. Over the time budget it is trimmed, not
     * dropped: the heavy requests are exactly the ones that pass it. A
     * request whose capture already spent the budget gets the trimmed
     * record at once; one whose profile or encoding runs out of time gets
     * it rebuilt from what is at hand. The trimmed record keeps metadata,
     * timing, SQL counts and fingerprints, the heaviest statements and the
     * profile's compact top, within a small fixed extra cost
     * (BUDGET_EXTRA_NS for the compact profile); only a failed write drops
     * it.
     */
    private function finishRecord($t0, $durationMs, $raw, $full, $weight, $error)
    {
        $project = $this->config->project();
        if ($project === '') {
            return ['status' => 'no_project', 'line' => null];
        }
        $admit = $this->spool()->admit();
        if (!$admit['admit']) {
            return ['status' => $admit['reason'], 'line' => null];
        }
        $c = $this->config;
        $budgetNs = $c->timeoutMs * 1e6;
        $deadline = $t0 + max(0, $budgetNs - $this->overheadNs);
        $overBudget = hrtime(true) >= $deadline;
        $record = $this->buildRecord($project, $durationMs, $full, $weight, $error, $overBudget);
        $profileItems = 0;
        if ($raw !== null) {
            $compact = !$full || $overBudget;
            $until = $compact ? max($deadline, hrtime(true) + self::BUDGET_EXTRA_NS) : $deadline;
            $record['profile'] = $raw instanceof \ExcimerProfiler
                ? Profiler::fromExcimer($raw, $c->maxStacks, $c->maxStackDepth, $c->periodMs, $until, $compact)
                : $this->profiler->profile($raw, $c->maxStacks, $until, $compact);
        }
        $raw = null;
        if (!$overBudget && hrtime(true) >= $deadline) {
            // The full profile ran out of time: the trimmed record instead.
            $overBudget = true;
            $record['sql'] = $this->sqlSection($full, true);
            if ($record['sql'] === null) {
                unset($record['sql']);
            }
            if (isset($record['profile'])) {
                $before = count(isset($record['profile']['stacks']) ? $record['profile']['stacks']
                    : (isset($record['profile']['edges']) ? $record['profile']['edges'] : []));
                $record['profile'] = Profiler::compact($record['profile']);
                $profileItems = $before - count(isset($record['profile']['stacks']) ? $record['profile']['stacks']
                    : (isset($record['profile']['edges']) ? $record['profile']['edges'] : []));
            }
        }
        if ($overBudget) {
            $cut = $full && isset($record['sql']) ? $this->sql->capturedCount() - count($record['sql']['queries']) : 0;
            $record['trimmed'] = ['reason' => 'budget', 'profile_items' => $profileItems, 'sql_items' => $cut];
        }
        $record['agent'] = [
            'overhead_us' => round(($this->overheadNs + hrtime(true) - $t0) / 1000, 1),
            'dropped_records' => $admit['dropped'],
            'spool_full' => false,
        ];
        $json = self::encode($record, $c->maxRecordBytes);
        if ($json === null) {
            $this->spool()->countDrop();
            return ['status' => 'encode_failed', 'line' => null];
        }
        if (!$this->spool()->append($json)) {
            return ['status' => 'write_failed', 'line' => null];
        }
        $this->overheadNs += hrtime(true) - $t0;
        return ['status' => $overBudget ? 'written_trimmed' : 'written', 'line' => $json];
    }

    /**
     * The record's `sql` section, or null without statements: every
     * captured statement in a full record, none in a summary, the heaviest
     * BUDGET_QUERIES when over the time budget; fingerprints in all three.
     */
    private function sqlSection($full, $overBudget)
    {
        if (!$this->config->sqlEnabled || $this->sql === null || $this->sql->isEmpty()) {
            return null;
        }
        $this->sql->failOpen('the statement threw before its end was seen');
        if ($overBudget) {
            return $this->sql->toArray($full ? self::BUDGET_QUERIES : 0, self::BUDGET_FINGERPRINTS);
        }
        return $this->sql->toArray($full ? PHP_INT_MAX : 0, $full ? SqlRecorder::MAX_FINGERPRINTS : self::SUMMARY_FINGERPRINTS);
    }

    /** The record without profile and agent sections. */
    private function buildRecord($project, $durationMs, $full, $weight, $error, $overBudget)
    {
        $c = $this->config;
        $record = [
            'v' => 1,
            'kind' => 'request',
            'id' => Util::uuid4(),
            // ts is when the record is made, at the end of the request: the
            // request started duration_ms before it (request.schema.json).
            'ts' => Util::formatTs(microtime()),
            'project' => $project,
            'host' => self::host(),
            'correlation_id' => self::correlationId(),
            'record_type' => $full ? 'full' : 'summary',
            'sampling_weight' => $weight,
            'duration_ms' => round($durationMs, 3),
            'runtime' => [
                'sapi' => PHP_SAPI,
                'php_version' => PHP_VERSION,
                'pid' => max(0, (int) getmypid()),
                'agent_version' => self::VERSION,
                'threshold_ms' => $c->thresholdMs,
            ],
        ];
        $http = $this->http($full && $c->metadataEnabled);
        if ($http !== null) {
            $record['http'] = $http;
        }
        $record['resources'] = $this->resources();
        if ($full && $this->context !== []) {
            $record['context'] = (object) $this->context;
        }
        $record['error'] = $error;
        $sql = $this->sqlSection($full, $overBudget);
        if ($sql !== null) {
            $record['sql'] = $sql;
        }
        return $record;
    }

    /** HTTP metadata; null for CLI scripts. */
    private function http($detailed)
    {
        if (PHP_SAPI === 'cli' || PHP_SAPI === 'phpdbg' || !isset($_SERVER['REQUEST_METHOD'])) {
            return null;
        }
        $status = http_response_code();
        $http = [
            'method' => Util::truncate((string) $_SERVER['REQUEST_METHOD'], 16),
            'url' => Util::truncate($this->redactor()->url(isset($_SERVER['REQUEST_URI'])
                ? $_SERVER['REQUEST_URI'] : ''), 8192),
            'status' => is_int($status) ? max(0, $status) : null,
        ];
        // Once the headers went out, a status set later was not sent: say so.
        if (headers_sent()) {
            $http['headers_sent'] = true;
        }
        $http += self::phalconRoute();
        if ($detailed) {
            $http['client_ip'] = isset($_SERVER['REMOTE_ADDR']) ? (string) $_SERVER['REMOTE_ADDR'] : null;
            $http['headers'] = (object) $this->headers();
            $http['get'] = (object) $this->redactor()->map(isset($_GET) ? $_GET : []);
            $http['post'] = (object) $this->redactor()->map(isset($_POST) ? $_POST : []);
        }
        return $http;
    }

    /** Selected request headers. Cookie and Authorization are never taken, whatever the config says. */
    private function headers()
    {
        $out = [];
        foreach ($this->config->headers as $name) {
            if ($name === 'cookie' || $name === 'authorization' || $name === 'proxy-authorization') {
                continue;
            }
            $key = 'HTTP_' . strtoupper(str_replace('-', '_', $name));
            if ($name === 'content-type' || $name === 'content-length') {
                $key = strtoupper(str_replace('-', '_', $name));
            }
            if (isset($_SERVER[$key])) {
                $value = $_SERVER[$key];
                // A header that carries a URL (Referer, Origin, X-Original-URL)
                // carries its query string too: redacted by key like the URL.
                if (is_string($value) && strpos($value, '?') !== false) {
                    $value = $this->redactor()->url($value);
                }
                $out[$name] = $this->redactor()->isSecretKey($name)
                    ? Redactor::MASK : $this->redactor()->value($value);
            }
        }
        return $out;
    }

    /**
     * Route, controller and action from Phalcon's DI when it is loaded. The
     * class checks never autoload, so an application without Phalcon pays two
     * hash lookups.
     */
    private static function phalconRoute()
    {
        $out = [];
        try {
            $di = null;
            if (class_exists('Phalcon\Di\Di', false)) {
                $di = \Phalcon\Di\Di::getDefault();
            } elseif (class_exists('Phalcon\Di', false)) {
                $di = \Phalcon\Di::getDefault();
            }
            if ($di === null) {
                return $out;
            }
            if ($di->has('router')) {
                $route = $di->getShared('router')->getMatchedRoute();
                if ($route !== null) {
                    $out['route'] = (string) $route->getPattern();
                }
            }
            if ($di->has('dispatcher')) {
                $dispatcher = $di->getShared('dispatcher');
                $out['controller'] = (string) $dispatcher->getControllerName();
                $out['action'] = (string) $dispatcher->getActionName();
            }
        } catch (\Throwable $e) {
            // A half-configured DI is the application's business, not ours.
        }
        return $out;
    }

    private function resources()
    {
        $out = [];
        if ($this->config->memoryEnabled) {
            $out['memory_usage_bytes'] = memory_get_usage();
            $out['memory_peak_bytes'] = memory_get_peak_usage();
        }
        if ($this->startUsage !== null) {
            $now = getrusage();
            $out['cpu_user_ms'] = round(max(0, self::cpuMs($now, 'utime') - self::cpuMs($this->startUsage, 'utime')), 3);
            $out['cpu_system_ms'] = round(max(0, self::cpuMs($now, 'stime') - self::cpuMs($this->startUsage, 'stime')), 3);
            // Whether time off the CPU was waiting (I/O, SQL, sleep: voluntary)
            // or queued for a busy CPU (involuntary): no profiler tells that.
            foreach (['ctx_switches_voluntary' => 'ru_nvcsw', 'ctx_switches_involuntary' => 'ru_nivcsw'] as $key => $ru) {
                if (isset($now[$ru], $this->startUsage[$ru])) {
                    $out[$key] = max(0, (int) $now[$ru] - (int) $this->startUsage[$ru]);
                }
            }
        }
        return $out;
    }

    private static function cpuMs(array $usage, $which)
    {
        $sec = isset($usage['ru_' . $which . '.tv_sec']) ? $usage['ru_' . $which . '.tv_sec'] : 0;
        $usec = isset($usage['ru_' . $which . '.tv_usec']) ? $usage['ru_' . $which . '.tv_usec'] : 0;
        return $sec * 1000 + $usec / 1000;
    }

    /** The fatal error that ended the request, from error_get_last()'s answer, or null. */
    private function fatalError($e)
    {
        if (!is_array($e) || !isset($e['type']) || !array_key_exists($e['type'], self::FATAL_TYPES)) {
            return null;
        }
        return [
            'type' => (int) $e['type'],
            'type_name' => self::FATAL_TYPES[$e['type']],
            // An uncaught PDOException carries the database's DETAIL line.
            'message' => Util::truncate($this->redactor()->error(isset($e['message']) ? (string) $e['message'] : ''), 8192),
            'file' => isset($e['file']) ? (string) $e['file'] : '',
            'line' => isset($e['line']) ? max(0, (int) $e['line']) : 0,
        ];
    }

    private static function host()
    {
        static $host = null;
        if ($host === null) {
            $name = gethostname();
            $host = Util::truncate(is_string($name) && $name !== '' ? $name : 'unknown', 255);
        }
        return $host;
    }

    /**
     * Encodes a record as one JSON line, trimming it under $cap bytes: the
     * profile's tail first (its lightest stacks or edges), then the SQL tail
     * (latest statements), then the lightest statement shapes, then the
     * free-form maps. The `trimmed` section says what was cut. Returns null
     * when even that does not fit.
     */
    public static function encode(array $record, $cap)
    {
        $json = json_encode($record, self::JSON_FLAGS);
        if (!is_string($json)) {
            return null;
        }
        $before = strlen($json);
        if ($before <= $cap) {
            return $json;
        }
        // Room for the `trimmed` section and the counters that grow.
        $excess = $before - $cap + 256;
        $profileItems = 0;
        foreach (['stacks', 'edges'] as $list) {
            while ($excess > 0 && !empty($record['profile'][$list])) {
                $item = array_pop($record['profile'][$list]);
                $excess -= strlen((string) json_encode($item, self::JSON_FLAGS)) + 1;
                $profileItems++;
                if ($list === 'stacks') {
                    $record['profile']['dropped_samples'] += $item['samples'];
                }
            }
        }
        if ($profileItems > 0) {
            $record['profile']['dropped'] += $profileItems;
        }
        $sqlItems = 0;
        while ($excess > 0 && !empty($record['sql']['queries'])) {
            $item = array_pop($record['sql']['queries']);
            $excess -= strlen((string) json_encode($item, self::JSON_FLAGS)) + 1;
            $sqlItems++;
        }
        if ($sqlItems > 0) {
            $record['sql']['not_stored'] = (isset($record['sql']['not_stored']) ? $record['sql']['not_stored'] : 0) + $sqlItems;
        }
        // Then the lightest statement shapes, counted in fingerprints_dropped.
        $shapeItems = 0;
        while ($excess > 0 && !empty($record['sql']['fingerprints'])) {
            $item = array_pop($record['sql']['fingerprints']);
            $excess -= strlen((string) json_encode($item, self::JSON_FLAGS)) + 1;
            $record['sql']['fingerprints_dropped'] = (isset($record['sql']['fingerprints_dropped'])
                ? $record['sql']['fingerprints_dropped'] : 0) + $item['count'];
            $record['sql']['fingerprints_dropped_ms'] = round((isset($record['sql']['fingerprints_dropped_ms'])
                ? $record['sql']['fingerprints_dropped_ms'] : 0) + $item['total_ms'], 3);
            $shapeItems++;
        }
        if ($excess > 0) {
            foreach (['headers', 'get', 'post'] as $map) {
                if (isset($record['http'][$map])) {
                    $record['http'][$map] = (object) ['[trimmed]' => true];
                }
            }
            if (isset($record['context'])) {
                $record['context'] = (object) ['[trimmed]' => true];
            }
        }
        $trimmed = isset($record['trimmed']) ? $record['trimmed'] : ['reason' => 'size', 'profile_items' => 0,
            'sql_items' => 0];
        // A record trimmed for the budget and then for size keeps the budget as its reason.
        $trimmed['profile_items'] += $profileItems;
        $trimmed['sql_items'] += $sqlItems;
        $trimmed['fingerprint_items'] = $shapeItems;
        $trimmed['bytes_before'] = $before;
        $record['trimmed'] = $trimmed;
        $json = json_encode($record, self::JSON_FLAGS);
        return is_string($json) && strlen($json) <= $cap ? $json : null;
    }
}
