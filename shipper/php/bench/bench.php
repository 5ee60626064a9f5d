<?php
/**
 * Benchmark of the PHP agent's cost, against a baseline measured in the same
 * run. Usage: php shipper/php/bench/bench.php [rounds]
 *
 * The reference request is a fixed amount of CPU work calibrated to take
 * about 20 ms. Each mode runs in child processes that alternate a baseline
 * request and an agent request, so every added time is a paired difference
 * (the machine's noise hits both halves alike). Children run 20 requests
 * each: Debian's Excimer 1.0.4 crashes about once per thousand profiler
 * cycles (fixed in 1.2.4); a crashed child is reported and rerun.
 * Children run with opcache on (opcache.enable_cli=1), as FPM runs the agent:
 * the include is compiled once per child, outside the timed requests.
 */

// BITVILLE_APM_BENCH_AGENT names another copy of the agent's include file,
// to measure an older agent under the same benchmark.
define('AGENT', getenv('BITVILLE_APM_BENCH_AGENT') ?: __DIR__ . '/../bitville-apm.php');
const PER_CHILD = 20;
/** Modes: label, INI flavour, and how statics and the compiled-INI cache behave. */
const MODES = [
    'disabled' => ['agent disabled', 'disabled'],
    'fast' => ['enabled, fast (not kept)', 'fast'],
    'kept' => ['enabled, slow (kept)', 'kept'],
    'fpm' => ['fast, FPM (compiled INI)', 'fast'],
    'fpm-parse' => ['fast, FPM, INI parsed', 'fast'],
    'floor' => ['floor: calls none can skip', 'fast'],
];

if (($argv[1] ?? '') === '--calibrate') {
    echo calibrate(), "\n";
    exit(0);
}
if (($argv[1] ?? '') === '--child') {
    child($argv[2], (int) $argv[3], $argv[4]);
    exit(0);
}
main(max(1, (int) ($argv[1] ?? 8)));

function work($iterations)
{
    $x = 0;
    for ($i = 0; $i < $iterations; $i++) {
        $x = ($x + $i * 7) % 1000003;
    }
    return $x;
}

function calibrate()
{
    // The fastest of several runs: the machine's load only ever adds time.
    $n = 200000;
    $best = PHP_INT_MAX;
    for ($i = 0; $i < 15; $i++) {
        $t = hrtime(true);
        work($n);
        $best = min($best, hrtime(true) - $t);
    }
    return (int) ($n * 20e6 / max(1, $best));
}

/** Writes an INI for a flavour and returns its path. */
function iniFor($flavour, $root)
{
    $enabled = $flavour === 'disabled' ? 'false' : 'true';
    $threshold = $flavour === 'kept' ? 0 : 100000;
    $path = "$root/$flavour.ini";
    // sample_rate is the default (0.1): the sampling decision is part of a
    // fast request's cost; the sampled tenth writes a summary and is left
    // out of the "not kept" figures.
    file_put_contents($path, "[general]\nenabled = $enabled\nthreshold_ms = $threshold\nproject_name = bench\n"
        . "sample_rate = 0.1\n[profiling]\nprofiler = excimer\nperiod_ms = 10\n"
        . "[transmission]\nspool_dir = $root/spool\nstate_dir = $root/state\n");
    return $path;
}

/**
 * One child: pairs of (baseline request, agent request). The agent request
 * does what the include does per request: Agent::boot() (read the config,
 * start the profiler, register the shutdown function), and at the end the
 * registered finish(), which also frees the profiler. The agent object
 * itself stays referenced by the shutdown list, as in a request, where PHP
 * frees it at the end (not timed: a small object by then). In FPM the
 * compiled agent code comes from opcache; the include itself is not timed.
 *
 * The child is one long-lived process. Modes 'fast', 'kept' and 'disabled'
 * keep the config memo in a static between requests (a long-running PHP
 * process). FPM forgets statics at every request: mode 'fpm' forgets them
 * too, so the config comes from the compiled-INI cache through opcache, and
 * 'fpm-parse' also has no usable cache directory (sys_temp_dir is missing),
 * so the INI is parsed at every request. What PHP resets between requests
 * for free (Agent::reset(), Config::forget()) is done outside the timing.
 */
function child($mode, $iterations, $ini)
{
    putenv('BITVILLE_APM_CONFIG=/nonexistent');
    require AGENT;
    putenv('BITVILLE_APM_CONFIG=' . $ini);
    // An older agent (BITVILLE_APM_BENCH_AGENT) whose boot() returns nothing.
    $legacy = (new ReflectionMethod('BitvilleApm\\Agent', 'boot'))->getNumberOfParameters() === 0;
    $pairs = [];
    for ($i = 0; $i < PER_CHILD; $i++) {
        $t = hrtime(true);
        work($iterations);
        $base = hrtime(true) - $t;

        \BitvilleApm\Agent::reset();
        if ($mode === 'fpm' || $mode === 'fpm-parse') {
            \BitvilleApm\Config::forget();
        }
        if ($mode === 'floor') {
            $pairs[] = floorRequest($iterations, $base);
            continue;
        }
        $t = hrtime(true);
        $agent = \BitvilleApm\Agent::boot();
        if ($legacy) {
            $agent = \BitvilleApm\Agent::current();
        }
        $t1 = hrtime(true);
        work($iterations);
        $t2 = hrtime(true);
        $status = 'off';
        if ($agent !== null) {
            $status = $agent->finish()['status'];
            $agent = null;
        }
        $with = hrtime(true) - $t;
        $fixed = $with - ($t2 - $t1);
        $pairs[] = [$base, $with, $fixed, $status];
    }
    echo json_encode($pairs), "\n";
}

/**
 * The same request with only what any agent with this feature set must call,
 * inline: read where the config is, start and stop Excimer at the period,
 * getrusage() for CPU time, register a shutdown function (fatal errors),
 * error_get_last(), one random draw for the sample rate. The agent's fixed
 * cost minus this one is what its own code adds.
 */
function floorRequest($iterations, $base)
{
    $t = hrtime(true);
    $path = getenv('BITVILLE_APM_CONFIG');
    $start = hrtime(true);
    $excimer = null;
    if (class_exists('ExcimerProfiler', false)) {
        $excimer = new ExcimerProfiler();
        $excimer->setPeriod(0.01);
        $excimer->start();
    }
    $usage = getrusage();
    register_shutdown_function('strlen', '');
    $t1 = hrtime(true);
    work($iterations);
    $t2 = hrtime(true);
    if ($excimer !== null) {
        $excimer->stop();
        $excimer = null;
    }
    $last = error_get_last();
    $draw = random_int(0, 999999);
    $with = hrtime(true) - $t;
    return [$base, $with, $with - ($t2 - $t1), 'not_kept'];
}

function runChild($mode, $iterations, $ini)
{
    for ($attempt = 0; $attempt < 3; $attempt++) {
        $cmd = escapeshellarg(PHP_BINARY) . ' -d opcache.enable_cli=1 '
            // The compiled-INI cache goes to the run's own folder.
            . '-d sys_temp_dir=' . escapeshellarg($mode === 'fpm-parse' ? '/nonexistent/bitville-apm-bench' : dirname($ini)) . ' '
            . escapeshellarg(__FILE__) . " --child $mode $iterations " . escapeshellarg($ini) . ' 2>&1';
        exec($cmd, $out, $code);
        $pairs = json_decode((string) end($out), true);
        if ($code === 0 && is_array($pairs)) {
            return $pairs;
        }
        fwrite(STDERR, "child for '$mode' died (exit $code): the known Excimer 1.0.4 crash if Excimer was on; rerunning\n");
        $out = [];
    }
    return [];
}

function pct(array $v, $p)
{
    sort($v);
    return $v[(int) min(count($v) - 1, floor($p / 100 * count($v)))];
}

function main($rounds)
{
    $root = sys_get_temp_dir() . '/bitville-apm-bench-' . getmypid();
    @mkdir("$root/spool", 0777, true);
    @mkdir("$root/state", 0777, true);
    $inis = [];
    foreach (MODES as $mode => $m) {
        $inis[$mode] = iniFor($m[1], $root);
    }
    // Written once and left alone, like a deployed config: a file changed in
    // the current second is not remembered yet (Config::load).
    sleep(1);
    // Calibrated under the children's settings (opcache makes work() faster).
    $iterations = (int) shell_exec(escapeshellarg(PHP_BINARY) . ' -d opcache.enable_cli=1 '
        . escapeshellarg(__FILE__) . ' --calibrate');
    $iterations = $iterations > 0 ? $iterations : calibrate();
    $data = [];
    for ($r = 0; $r < $rounds; $r++) {
        foreach (array_keys(MODES) as $mode) {
            foreach (runChild($mode, $iterations, $inis[$mode]) as $pair) {
                $data[$mode][] = $pair;
            }
        }
    }
    $excimer = phpversion('excimer') ?: 'not installed';
    printf("PHP %s, Excimer %s at 10 ms (default period); %d requests per mode, paired with a baseline\n",
        PHP_VERSION, $excimer, count($data['fast'] ?? []));
    $bases = [];
    foreach ($data as $pairs) {
        foreach ($pairs as $p) {
            $bases[] = $p[0];
        }
    }
    $ref = pct($bases, 50) / 1e3;
    printf("reference request (baseline): median %.1f ms; fast modes count only requests not kept\n\n", $ref / 1e3);
    printf("%-28s %14s %14s %10s\n", 'mode', 'added us (p50)', 'fixed us (p50)', 'ratio');
    $results = [];
    foreach (MODES as $mode => $m) {
        $pairs = $data[$mode] ?? [];
        if ($m[1] === 'fast') {
            // The sampled tenth wrote a summary record: not a request "not kept".
            $pairs = array_values(array_filter($pairs, function ($p) { return $p[3] === 'not_kept'; }));
        }
        if ($pairs === []) {
            printf("%-28s %14s\n", $m[0], 'no data');
            continue;
        }
        $added = array_map(function ($p) { return ($p[1] - $p[0]) / 1e3; }, $pairs);
        $fixed = array_map(function ($p) { return $p[2] / 1e3; }, $pairs);
        $a = pct($added, 50);
        $f = pct($fixed, 50);
        $ratio = ($ref + $a) / $ref;
        $results[$mode] = [$a, $f, $ratio];
        printf("%-28s %14.1f %14.1f %10.4f\n", $m[0], $a, $f, $ratio);
    }

    // Issue #23: every kept record carries a compact profile, the sampled
    // summaries included. What a summary costs, and how big it is.
    $summaries = [];
    foreach (['fast', 'fpm', 'fpm-parse'] as $mode) {
        foreach ($data[$mode] ?? [] as $p) {
            if ($p[3] === 'written') {
                $summaries[] = $p[2] / 1e3;
            }
        }
    }
    $sizes = [];
    $profileSizes = [];
    foreach (glob("$root/spool/*.ndjson") ?: [] as $f) {
        foreach (file($f, FILE_IGNORE_NEW_LINES) as $line) {
            $r = json_decode($line, true);
            if (($r['record_type'] ?? '') === 'summary') {
                $sizes[] = strlen($line);
                $profileSizes[] = isset($r['profile']) ? strlen(json_encode($r['profile'], JSON_UNESCAPED_SLASHES)) : 0;
            }
        }
    }
    if ($summaries !== [] && $sizes !== []) {
        printf("%-28s %14s %14.1f %10s\n", 'summary written (sampled)', '', pct($summaries, 50), '');
        printf("summary records: %d, %d bytes p50 (max %d), of which the compact profile %d bytes p50 (max %d)\n",
            count($sizes), pct($sizes, 50), max($sizes), pct($profileSizes, 50), max($profileSizes));
    }

    // Writing a 256 KiB record: encode (with the size check) and one append.
    putenv('BITVILLE_APM_CONFIG=/nonexistent');
    require_once AGENT;
    $record = bigRecord(256 * 1024);
    $spool = new \BitvilleApm\Spool("$root/spool", "$root/state", 3, 60);
    $writes = [];
    $encodes = [];
    for ($i = 0; $i < 300; $i++) {
        $t = hrtime(true);
        $json = \BitvilleApm\Agent::encode($record, 524288);
        $t1 = hrtime(true);
        $spool->append($json);
        $t2 = hrtime(true);
        $encodes[] = ($t1 - $t) / 1e3;
        $writes[] = ($t2 - $t) / 1e3;
    }
    $appends = array_map(function ($w, $e) { return $w - $e; }, $writes, $encodes);
    printf("\n256 KiB record (%d bytes): encode+append p50 %.0f us, p99 %.0f us; encode p99 %.0f us; append p99 %.0f us\n",
        strlen($json), pct($writes, 50), pct($writes, 99), pct($encodes, 99), pct($appends, 99));
    printf("load average during the run: %.1f on %d CPUs (numbers above include that contention)\n",
        sys_getloadavg()[0], (int) shell_exec('nproc'));
    foreach (coldCalls($iterations) as $line) {
        echo "this host: $line\n";
    }

    $met = function ($mode, $i, $max) use ($results) {
        return isset($results[$mode]) && $results[$mode][$i] <= $max ? 'met' : 'MISSED';
    };
    printf("\ntargets: fast ratio <= 1.02: %s; fixed bookkeeping <= 100 us: %s (FPM: %s); kept write p99 < 2 ms: %s\n",
        $met('fast', 2, 1.02), $met('fast', 1, 100), $met('fpm', 1, 100),
        pct($writes, 99) < 2000 ? 'met' : 'MISSED');
    exec('rm -rf ' . escapeshellarg($root));
}

/**
 * What the floor's calls cost on this host back to back and right after a
 * request's work (the reference request), which is when an agent makes them:
 * how far this host's floor is from one where the bookkeeping target can be
 * judged.
 */
function coldCalls($iterations)
{
    $calls = ['getrusage()' => function () {
        getrusage();
    }];
    if (class_exists('ExcimerProfiler', false)) {
        $calls['Excimer start+stop'] = function () {
            $e = new ExcimerProfiler();
            $e->setPeriod(0.01);
            $e->start();
            $e->stop();
        };
    }
    $lines = [];
    foreach ($calls as $name => $call) {
        $cold = [];
        $hot = [];
        for ($i = 0; $i < 40; $i++) {
            work($iterations);
            $t = hrtime(true);
            $call();
            $cold[] = (hrtime(true) - $t) / 1e3;
            $t = hrtime(true);
            $call();
            $hot[] = (hrtime(true) - $t) / 1e3;
        }
        $lines[] = sprintf('%s p50 %.1f us right after the reference request, %.1f us when repeated at once',
            $name, pct($cold, 50), pct($hot, 50));
    }
    return $lines;
}

function bigRecord($bytes)
{
    $r = ['v' => 1, 'kind' => 'request', 'id' => \BitvilleApm\Util::uuid4(), 'ts' => '2026-11-27T11:47:44.123456Z',
        'project' => 'bench', 'host' => 'h', 'correlation_id' => \BitvilleApm\Util::uuid4(), 'record_type' => 'full',
        'sampling_weight' => 1, 'duration_ms' => 900.5, 'runtime' => ['sapi' => 'fpm-fcgi', 'php_version' => PHP_VERSION, 'pid' => 1],
        'profile' => ['profiler' => 'excimer', 'period_ms' => 10, 'total_samples' => 0, 'stacks' => [], 'dropped' => 0,
            'dropped_samples' => 0],
        'sql' => ['queries' => [], 'total_count' => 0, 'dropped' => 0, 'total_ms' => 0]];
    for ($i = 0; strlen(json_encode($r)) < $bytes; $i++) {
        $r['profile']['stacks'][] = ['frames' => ['{main}', 'App\\Kernel::handle', 'App\\Controller\\Shop::list', 'Repo::find' . $i],
            'samples' => 1 + $i % 7];
        $r['sql']['queries'][] = ['sql' => 'SELECT * FROM products WHERE category_id = $1 AND price < $2 LIMIT 50 /* ' . $i . ' */',
            'params' => [$i, 100], 'op' => 'execute', 'source' => 'pdo', 'start_ms' => $i, 'duration_ms' => 0.4,
            'status' => 'ok', 'frames' => [['file' => '/srv/app/src/Repo.php', 'line' => 42, 'function' => 'Repo->find']]];
    }
    return $r;
}
