<?php
/**
 * Excimer crash stress harness (issue #20 §1): how often does a profiler mode
 * kill PHP workers, and what does a running timer cost an idle process?
 *
 *   php shipper/php/stress/stress.php [--requests N] [--periods 1,10]
 *       [--fpm-modes none,startstop,nostop,quiet,agent] [--cli-modes startstop,once,quiet]
 *       [--workers 6] [--max-requests 0] [--idle-seconds 10] [--must-survive agent,quiet]
 *
 * --max-requests is php-fpm's pm.max_requests: a worker exits after that
 * many requests, right after the last one, which is where the glibc timer
 * race of Excimer < 1.2.4 kills it (0: workers live for the whole run).
 * Modes are described in work.php; `agent` is bitville-apm.php itself with
 * profiler = auto at the period, 5% of requests kept as summaries.
 *
 * - FPM: php-fpm (PHP_FPM, default php-fpm8.2) with one static pool serving
 *   work.php, N requests per mode and period from concurrent FastCGI
 *   clients. Workers that died on a signal are counted from php-fpm's own
 *   log ("child N exited on signal S"), and so are requests that got no
 *   answer. A mode is a way of driving Excimer in each request (work.php).
 * - CLI: PHP processes of --cli-per-process "requests" each, N in all
 *   (2,000: long-running processes; 20: every process exit is a chance for
 *   the race, as at the end of every CLI script):
 *   `startstop` makes, starts and stops a profiler per request; `once` makes
 *   and starts one profiler per process and only flush()es it per request,
 *   so its timer is never deleted while the process lives. A process that
 *   dies on a signal is counted and replaced.
 * - Idle: CPU time (user + system, all threads) that a process sleeping for
 *   --idle-seconds spends with a started profiler, against none.
 *
 * Exits 1 when a mode named in --must-survive lost a worker or process, or
 * when the harness itself failed (too few answers without a death to
 * explain them). PHP 7.4 syntax, so it also runs in the bullseye root.
 */

const WORK = __DIR__ . '/work.php';

require __DIR__ . '/../tests/support/FastCgi.php';

use BitvilleApm\Tests\FastCgi;

if (($argv[1] ?? '') === '--fpm-client') {
    fpmClient($argv[2], (int) $argv[3], $argv[4], $argv[5], $argv[6], $argv[7]);
    exit(0);
}
if (($argv[1] ?? '') === '--cli-loop') {
    cliLoop($argv[2], (float) $argv[3], (int) $argv[4]);
    exit(0);
}
if (($argv[1] ?? '') === '--idle') {
    idleChild($argv[2], (float) $argv[3], (float) $argv[4]);
    exit(0);
}

$opts = options($argv);
exit(main($opts));

function options(array $argv)
{
    $o = ['requests' => 100000, 'periods' => '1,10', 'fpm-modes' => 'none,startstop,nostop',
        'cli-modes' => 'startstop,once', 'workers' => 6, 'idle-seconds' => 10, 'must-survive' => '', 'max-requests' => 0, 'cli-per-process' => 2000,
        'agent-config' => ''];
    for ($i = 1; $i < count($argv); $i++) {
        $k = ltrim($argv[$i], '-');
        if (!array_key_exists($k, $o) || !isset($argv[$i + 1])) {
            fwrite(STDERR, "stress.php: unknown or incomplete option {$argv[$i]}\n");
            exit(2);
        }
        $o[$k] = $argv[++$i];
    }
    foreach (['periods', 'fpm-modes', 'cli-modes', 'must-survive'] as $k) {
        $o[$k] = $o[$k] === '' || $o[$k] === 'none-at-all' ? [] : explode(',', $o[$k]);
    }
    $o['requests'] = max(1, (int) $o['requests']);
    $o['workers'] = max(1, (int) $o['workers']);
    return $o;
}

function main(array $o)
{
    $fpm = getenv('PHP_FPM') ?: 'php-fpm8.2';
    printf("Excimer stress: PHP %s, Excimer %s, %s; %d requests per mode and period; load %.1f on %d CPUs\n",
        PHP_VERSION, phpversion('excimer') ?: 'MISSING', php_uname('r'), $o['requests'], sys_getloadavg()[0],
        (int) shell_exec('nproc'));
    if (!class_exists('ExcimerProfiler')) {
        fwrite(STDERR, "stress.php: Excimer is not loaded in this PHP\n");
        return 1;
    }
    $failed = false;
    $rows = [];
    foreach ($o['periods'] as $period) {
        foreach ($o['fpm-modes'] as $mode) {
            $r = runFpm($fpm, $mode, (float) $period, $o['requests'], $o['workers'], $o['agent-config'],
                (int) $o['max-requests']);
            $rows[] = $r;
            printf("fpm  %-10s %5s ms: %7d requests, %7d answered, %4d workers died on a signal%s, %5.0f s%s\n",
                $mode, $period, $r['sent'], $r['ok'], $r['deaths'], $r['signals'] ? ' (' . $r['signals'] . ')' : '',
                $r['seconds'], $mode === 'agent' ? sprintf(' (%d records, %d with an Excimer profile)', $r['records'], $r['profiled']) : '');
            foreach (array_slice($r['stderr'], 0, 3, true) as $line => $n) {
                printf("     workers said %d x: %s\n", $n, $line);
            }
            $failed = $failed || verdict($r, $o['must-survive']);
        }
        foreach ($o['cli-modes'] as $mode) {
            $r = runCli($mode, (float) $period, $o['requests'], $o['workers'], max(1, (int) $o['cli-per-process']));
            $rows[] = $r;
            printf("cli  %-10s %5s ms: %7d requests, %7d done, %4d processes died on a signal%s, %5.0f s\n",
                $mode, $period, $r['sent'], $r['ok'], $r['deaths'], $r['signals'] ? ' (' . $r['signals'] . ')' : '',
                $r['seconds']);
            $failed = $failed || verdict($r, $o['must-survive']);
        }
    }
    if ((int) $o['idle-seconds'] > 0) {
        $base = idle('none', 10, (float) $o['idle-seconds']);
        printf("idle %-10s        : %.1f ms CPU in %d s\n", 'no timer', $base, $o['idle-seconds']);
        foreach ($o['periods'] as $period) {
            $cpu = idle('running', (float) $period, (float) $o['idle-seconds']);
            printf("idle timer at %5s ms: %.1f ms CPU in %d s (%.2f%% of a CPU above no timer)\n", $period, $cpu,
                $o['idle-seconds'], max(0, $cpu - $base) / ($o['idle-seconds'] * 10));
        }
    }
    echo $failed ? "stress: FAILED\n" : "stress: ok\n";
    return $failed ? 1 : 0;
}

/** Whether a result fails the run. */
function verdict(array $r, array $mustSurvive)
{
    if (in_array($r['mode'], $mustSurvive, true) && $r['deaths'] > 0) {
        echo "  ^ {$r['mode']} must not lose a worker\n";
        return true;
    }
    // Each death loses at most the requests in flight in that worker.
    if ($r['ok'] + $r['deaths'] * 2 < $r['sent'] * 0.999) {
        echo "  ^ too few answers: the harness or php-fpm failed (see above)\n";
        return true;
    }
    return false;
}

function runFpm($fpm, $mode, $period, $requests, $workers, $agentConfig, $maxRequests)
{
    $root = sys_get_temp_dir() . '/bitville-apm-stress-' . getmypid() . '-' . bin2hex(random_bytes(3));
    mkdir($root, 0755, true);
    $root0 = function_exists('posix_getuid') && posix_getuid() === 0;
    if ($mode === 'agent' && $agentConfig === '') {
        // The agent as a user gets it: profiler = auto at this period, 5% of
        // requests kept as summaries (with their compact profile).
        mkdir("$root/spool");
        $agentConfig = "$root/agent.ini";
        file_put_contents($agentConfig, "[general]\nenabled = true\nthreshold_ms = 100000\nproject_name = stress\n"
            . "sample_rate = 0.05\n[profiling]\nprofiler = auto\nperiod_ms = $period\n"
            . "[transmission]\nspool_dir = $root/spool\n");
        touch($agentConfig, time() - 60);
    }
    $conf = "[global]\npid = $root/fpm.pid\nerror_log = $root/fpm.log\nlog_level = notice\ndaemonize = no\n"
        . "[stress]\n" . ($root0 ? "user = root\ngroup = root\n" : '')
        . "listen = $root/fpm.sock\npm = static\npm.max_children = $workers\npm.max_requests = $maxRequests\n"
        . "catch_workers_output = yes\n"
        . ($agentConfig !== '' ? "env[BITVILLE_APM_CONFIG] = $agentConfig\n" : '')
        . "php_admin_value[sys_temp_dir] = $root\n";
    file_put_contents("$root/fpm.conf", $conf);
    $cmd = array_merge([$fpm, '-F', '-y', "$root/fpm.conf"], $root0 ? ['-R'] : []);
    $proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', "$root/fpm.out", 'w'],
        2 => ['file', "$root/fpm.out", 'a']], $pipes);
    if (!is_resource($proc)) {
        fwrite(STDERR, "stress.php: cannot start $fpm\n");
        exit(1);
    }
    for ($i = 0; $i < 200 && !file_exists("$root/fpm.sock"); $i++) {
        usleep(50000);
    }
    $t = microtime(true);
    $clients = [];
    $per = (int) ceil($requests / $workers);
    $agent = realpath(__DIR__ . '/../bitville-apm.php');
    for ($c = 0; $c < $workers; $c++) {
        $n = min($per, $requests - $c * $per);
        if ($n <= 0) {
            break;
        }
        $clients[] = proc_open([PHP_BINARY, __FILE__, '--fpm-client', "$root/fpm.sock", (string) $n, $mode,
            (string) $period, $agent, "$root/client.$c"], [0 => ['file', '/dev/null', 'r']], $pipes);
    }
    foreach ($clients as $p) {
        proc_close($p);
    }
    $seconds = microtime(true) - $t;
    proc_terminate($proc, SIGQUIT);
    for ($i = 0; $i < 100 && proc_get_status($proc)['running']; $i++) {
        usleep(50000);
    }
    proc_terminate($proc, SIGKILL);
    proc_close($proc);
    $sent = 0;
    $ok = 0;
    foreach (glob("$root/client.*") as $f) {
        list($s, $k) = array_map('intval', explode(' ', trim((string) file_get_contents($f))));
        $sent += $s;
        $ok += $k;
    }
    $log = (string) file_get_contents("$root/fpm.log");
    preg_match_all('/child \d+ exited on signal (\d+)/', $log, $m);
    $signals = array_count_values($m[1]);
    ksort($signals);
    $sig = [];
    foreach ($signals as $s => $n) {
        $sig[] = "$n x signal $s";
    }
    $stderr = [];
    if (preg_match_all('/child \d+ said into stderr: "([^"]*)"/', $log, $said)) {
        $stderr = array_count_values($said[1]);
    }
    $records = 0;
    $profiled = 0;
    foreach (glob("$root/spool/*.ndjson") ?: [] as $f) {
        $text = (string) file_get_contents($f);
        $records += substr_count($text, "\n");
        $profiled += substr_count($text, '"profiler":"excimer"');
    }
    exec('rm -rf ' . escapeshellarg($root));
    return ['kind' => 'fpm', 'records' => $records, 'profiled' => $profiled, 'stderr' => $stderr, 'mode' => $mode, 'period' => $period, 'sent' => $sent, 'ok' => $ok,
        'deaths' => count($m[1]), 'signals' => implode(', ', $sig), 'seconds' => $seconds];
}

/** One FastCGI client: $n sequential requests; writes "sent ok" to $out. */
function fpmClient($socket, $n, $mode, $period, $agent, $out)
{
    $ok = 0;
    $params = ['SCRIPT_FILENAME' => realpath(WORK), 'SCRIPT_NAME' => '/work.php', 'REQUEST_URI' => '/work.php',
        'REQUEST_METHOD' => 'GET', 'GATEWAY_INTERFACE' => 'CGI/1.1', 'SERVER_PROTOCOL' => 'HTTP/1.1',
        'STRESS_MODE' => $mode, 'STRESS_PERIOD_MS' => $period, 'STRESS_AGENT' => $agent];
    $request = FastCgi\request($params);
    for ($i = 0; $i < $n; $i++) {
        $s = @stream_socket_client('unix://' . $socket, $errno, $errstr, 10);
        if ($s === false) {
            usleep(10000);
            continue;
        }
        stream_set_timeout($s, 30);
        $answer = FastCgi\exchange($s, $request);
        fclose($s);
        if (strpos($answer, "\r\n\r\nok ") !== false) {
            $ok++;
        }
    }
    file_put_contents($out, "$n $ok");
}

/** CLI loops: processes of up to --cli-per-process requests each, --workers at a time, until $requests are done. */
function runCli($mode, $period, $requests, $parallel, $perProcess)
{
    $t = microtime(true);
    $done = 0;
    $attempted = 0;
    $deaths = 0;
    $signals = [];
    $running = [];
    $dir = sys_get_temp_dir() . '/bitville-apm-stress-cli-' . getmypid();
    @mkdir($dir);
    $next = 0;
    while ($attempted < $requests || $running !== []) {
        while (count($running) < $parallel && $attempted < $requests) {
            $n = min($perProcess, $requests - $attempted);
            $attempted += $n;
            $out = "$dir/out." . $next++;
            $p = proc_open([PHP_BINARY, __FILE__, '--cli-loop', $mode, (string) $period, (string) $n],
                [0 => ['file', '/dev/null', 'r'], 1 => ['file', $out, 'w'], 2 => ['file', '/dev/null', 'w']], $pipes);
            $running[] = [$p, $out, $n];
        }
        usleep(20000);
        foreach ($running as $i => $r) {
            $st = proc_get_status($r[0]);
            if ($st['running']) {
                continue;
            }
            proc_close($r[0]);
            unset($running[$i]);
            $count = (int) @file_get_contents($r[1]);
            if ($st['signaled']) {
                $deaths++;
                $signals[] = $st['termsig'];
                // The requests that did not run are run again by another process.
                $attempted -= max(0, $r[2] - $count);
                $done += $count;
            } else {
                $done += $r[2];
            }
        }
    }
    exec('rm -rf ' . escapeshellarg($dir));
    $sig = [];
    foreach (array_count_values($signals) as $s => $n) {
        $sig[] = "$n x signal $s";
    }
    return ['kind' => 'cli', 'mode' => $mode, 'period' => $period, 'sent' => $done, 'ok' => $done,
        'deaths' => $deaths, 'signals' => implode(', ', $sig), 'seconds' => microtime(true) - $t];
}

/** A long-running process: $n requests; prints how many ran, every 50 (a crash leaves the last count). */
function cliLoop($mode, $period, $n)
{
    require WORK;
    if ($mode === 'once') {
        $p = new ExcimerProfiler();
        $p->setPeriod($period / 1000);
        $p->setMaxDepth(32);
        $p->start();
        for ($i = 1; $i <= $n; $i++) {
            $p->flush(); // The request's start: what came before is not its own.
            stress_middle(mt_rand(0, (int) (2000 * $period)));
            count($p->flush());
            if ($i % 50 === 0) {
                progress($i);
            }
        }
        return;
    }
    for ($i = 1; $i <= $n; $i++) {
        stress_page($mode, $period);
        if ($i % 50 === 0 || $i === $n) {
            progress($i);
        }
    }
}

/** Rewrites the child's output file with the count of requests done. */
function progress($i)
{
    ftruncate(STDOUT, 0);
    rewind(STDOUT);
    fwrite(STDOUT, (string) $i);
}

/** CPU ms a sleeping child spends in $seconds with a running profiler ('running') or none. */
function idle($what, $period, $seconds)
{
    $out = tempnam(sys_get_temp_dir(), 'bitville-apm-idle');
    $p = proc_open([PHP_BINARY, __FILE__, '--idle', $what, (string) $period, (string) $seconds],
        [0 => ['file', '/dev/null', 'r'], 1 => ['file', $out, 'w']], $pipes);
    proc_close($p);
    $ms = (float) file_get_contents($out);
    unlink($out);
    return $ms;
}

function idleChild($what, $period, $seconds)
{
    if ($what === 'running') {
        $p = new ExcimerProfiler();
        $p->setPeriod($period / 1000);
        $p->start();
    }
    $u0 = getrusage();
    usleep((int) ($seconds * 1e6));
    $u1 = getrusage();
    $ms = 0;
    foreach (['utime', 'stime'] as $k) {
        $ms += ($u1["ru_$k.tv_sec"] - $u0["ru_$k.tv_sec"]) * 1000 + ($u1["ru_$k.tv_usec"] - $u0["ru_$k.tv_usec"]) / 1000;
    }
    echo $ms;
}
