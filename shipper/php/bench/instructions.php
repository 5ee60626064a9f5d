<?php
/**
 * The agent's work per request in instructions, counted by callgrind inside
 * real PHP-FPM: unlike time, the count is the same on an idle and on a busy
 * host, so it tells the agent's own work apart from what the host does to it.
 * Usage: php shipper/php/bench/instructions.php
 * (needs valgrind and php-fpm8.2, or the binary named by PHP_FPM).
 *
 * For each mode, PHP-FPM runs under callgrind with one worker that ends after
 * N requests (pm.max_requests), so callgrind writes the worker's count when
 * it exits; N = 10 and N = 30, and the difference over 20 is what one request
 * costs in that mode, without the worker's start and the first request's
 * compiling. page.php runs with no loop in these modes, and once with its
 * loop, which gives the instructions per iteration and so what a 20 ms page
 * (the iterations fpm.php calibrates here) is in instructions. Counted in
 * user space only: the system calls' time in the kernel is not in it (fpm.php
 * measures that), nor are Excimer's ticks, which arrive fifty times as often
 * per instruction under valgrind. BITVILLE_APM_BENCH_KEEP=1 keeps callgrind's
 * files, for callgrind_annotate.
 */

require __DIR__ . '/FpmBench.php';

use BitvilleApm\Bench\Fpm;

const FEW = 10;
const MANY = 30;
const LOOP = 20000;

/** Mode => [label, page mode, config (null: none)]. */
const MODES = [
    'off' => ['off (no agent)', 'off', null],
    'floor_none' => ['floor without Excimer', 'floor_none', 'off'],
    'disabled' => ['agent, enabled = false', 'agent', 'off'],
    'none' => ['agent, profiler = none', 'agent', 'none'],
];

main();

function main()
{
    $base = sys_get_temp_dir() . '/bitville-apm-instructions-' . getmypid();
    $runs = [];
    foreach (MODES as $mode => list(, $page, $config)) {
        foreach ([FEW, MANY] as $n) {
            $runs["$mode $n"] = [$page, $config, $n, 0];
        }
    }
    $runs['loop'] = ['off', null, MANY, LOOP];
    // All at once: each count is the worker's own, whatever runs beside it.
    $counts = [];
    foreach (array_chunk($runs, 4, true) as $chunk) {
        $started = [];
        foreach ($chunk as $name => list($page, $config, $n, $iterations)) {
            $root = "$base/" . str_replace(' ', '-', $name);
            $started[$name] = [$root, start($root, $page, $config, $n, $iterations)];
        }
        foreach ($started as $name => list($root, $child)) {
            $counts[$name] = finish($root, $child);
        }
    }
    if (getenv('BITVILLE_APM_BENCH_KEEP')) {
        echo "callgrind's files are kept in $base (callgrind_annotate tells where the instructions go)\n";
    } else {
        exec('rm -rf ' . escapeshellarg($base));
    }
    report($counts, Fpm\calibrate());
}

/**
 * Starts PHP-FPM under callgrind in $root and, in a child process, sends it
 * $n requests; returns the child's pid.
 */
function start($root, $page, $config, $n, $iterations)
{
    Fpm\prepare($root);
    $pid = pcntl_fork();
    if ($pid === -1) {
        fwrite(STDERR, "cannot fork\n");
        exit(1);
    }
    if ($pid > 0) {
        return $pid;
    }
    $proc = Fpm\start($root, ['valgrind', '--tool=callgrind', "--callgrind-out-file=$root/callgrind.%p"], $n);
    $ok = true;
    for ($i = 0; $i < $n; $i++) {
        $ok = $ok && Fpm\request($root, $iterations, $page, $config === null ? '' : "$root/$config.ini") !== null;
    }
    // The worker writes its count as it exits after its last request.
    $master = proc_get_status($proc)['pid'];
    for ($i = 0; $i < 1200 && workerCount($root, $master) === null; $i++) {
        usleep(100000);
    }
    proc_terminate($proc);
    proc_close($proc);
    exit($ok ? 0 : 1);
}

/** Waits for the child and returns its worker's instruction count. */
function finish($root, $child)
{
    pcntl_waitpid($child, $status);
    $count = workerCount($root, null);
    if (!pcntl_wifexited($status) || pcntl_wexitstatus($status) !== 0 || $count === null) {
        fwrite(STDERR, "a run in $root failed (see fpm.out and fpm.log there)\n");
        exit(1);
    }
    return $count;
}

/**
 * The instructions callgrind counted in the worker that ended (the smallest
 * complete count other than the master's; the master's own ends last), or null.
 */
function workerCount($root, $master)
{
    $counts = [];
    foreach (glob("$root/callgrind.*") as $file) {
        if ($master !== null && $file === "$root/callgrind.$master") {
            continue;
        }
        if (preg_match('/^totals: (\d+)$/m', (string) file_get_contents($file), $m)) {
            $counts[] = (int) $m[1];
        }
    }
    // With the master's count among them (after it ended), the worker's is the larger.
    return $counts === [] ? null : ($master === null ? max($counts) : $counts[0]);
}

function report(array $counts, $iterations)
{
    $per = [];
    foreach (MODES as $mode => $_) {
        $per[$mode] = ($counts["$mode " . MANY] - $counts["$mode " . FEW]) / (MANY - FEW);
    }
    $perIteration = ($counts['loop'] - $counts['off ' . MANY]) / (MANY * LOOP);
    $page = $perIteration * $iterations;
    printf("PHP-FPM %s under callgrind: instructions per request (%d requests minus %d, over %d)\n",
        PHP_VERSION, MANY, FEW, MANY - FEW);
    printf("%-28s %14s %12s\n", 'mode', 'per request', 'above off');
    foreach (MODES as $mode => list($label)) {
        printf("%-28s %14.0f %12s\n", $label, $per[$mode], $mode === 'off' ? '-' : sprintf('%.0f', $per[$mode] - $per['off']));
    }
    $above = $per['none'] - $per['floor_none'];
    printf("the page's loop: %.2f instructions per iteration; %d iterations take about 20 ms here (calibrated"
        . " now, so a busy host moves it): %.1f M instructions\n", $perIteration, $iterations, $page / 1e6);
    printf("agent (profiler = none) above the floor without Excimer: %.0f instructions; on/off on that page: %.4f\n",
        $above, ($page + $per['none'] - $per['off']) / $page);
}
