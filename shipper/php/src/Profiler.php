<?php
/**
 * Chooses and drives the profiler for one request, and turns its raw output
 * into the record's bounded `profile` object.
 *
 * - Excimer (the default: sampling, wall clock): stacks root first with
 *   sample counts, heaviest `maxStacks` kept, plus the heaviest leaves.
 *   Bounded while it runs: Excimer keeps at most `maxDepth` frames per
 *   sample, and every FLUSH_SAMPLES samples its log is folded into a bounded
 *   count of stacks (a 60 s request or a long CLI job holds no more).
 * - xhprof / tideways_xhprof (explicit choice only: they instrument every
 *   call, see README): caller==>callee edges, heaviest by (estimated)
 *   exclusive wall time kept, with their artefacts cleaned (`f@N` recursion
 *   markers folded into `f`, self-edges dropped, a `main()` root given to
 *   top-level calls).
 * Both fold the agent's own frames (BitvilleApm\...) into the caller they
 * wrap, so its PDO wrapper is never a suspect of its own; an Excimer sample
 * taken while the agent itself ran at the top (its shutdown function, the
 * wait for a quiet moment to stop the timer) is not the request's and is
 * dropped.
 *
 * Excimer before 1.2.4 and the glibc timer race (README): a timer
 * notification that runs after Excimer's module shutdown aborts the process
 * ("pthread_mutex_lock(): Invalid argument", SIGABRT), which happens when a
 * process exits just after deleting a timer that had a tick in flight: every
 * CLI script, and an FPM worker at pm.max_requests. Measured (stress/), a
 * timer made once per process and never deleted does not help (it is
 * deleted at exit, in flight or not); deleting it only between ticks is
 * meant to: stopExcimer() waits, when needed, until no tick is in flight or
 * due within QUIET_MARGIN_NS, knowing when ticks are due from the first
 * tick's random stagger (see startExcimer()).
 */

namespace BitvilleApm;

final class Profiler
{
    /** The Excimer release with the timer rewrite (no race at all). */
    const EXCIMER_SAFE_VERSION = '1.2.4';
    /** Samples Excimer holds before they are folded into the counts. */
    const FLUSH_SAMPLES = 1000;
    /** Distinct stacks counted per request while collecting; the rest only as samples. */
    const MAX_DISTINCT_STACKS = 5000;
    /** Do not delete the timer this close before its next tick. */
    const QUIET_MARGIN_NS = 300000;
    /**
     * Longest the stop waits for a quiet moment, in total: a tick's handler
     * can run milliseconds late on a loaded host (with 2 ms, 4 of 2,000
     * worker exits still died in stress/; with 10 ms, none).
     */
    const QUIET_WAIT_MAX_NS = 10000000;
    /** The compact profile (summaries, records over the time budget). */
    const COMPACT_STACKS = 5;
    const COMPACT_DEPTH = 16;
    const COMPACT_LEAVES = 10;
    const COMPACT_BYTES = 2048;
    /** Leaves listed in a full profile. */
    const LEAVES = 20;
    const AGENT_PREFIX = 'BitvilleApm\\';
    const AGENT_FUNCTION_PREFIX = 'bitville_apm_';

    /** @var string xhprof | tideways */
    public $kind;
    /** @var bool */
    private $running = false;

    /** @var array<string,int> Stacks folded out of Excimer's log while the request ran. */
    private static $absorbed = [];
    /** @var int Samples (events) folded out while the request ran. */
    private static $absorbedEvents = 0;
    /** @var int Samples over MAX_DISTINCT_STACKS, counted only. */
    private static $absorbedOverflow = 0;

    private function __construct($kind)
    {
        $this->kind = $kind;
    }

    /**
     * Which profiler a choice resolves to on this PHP, or null for none.
     * `auto` is Excimer or nothing: xhprof-family profilers cost about
     * 600 ns per PHP call, so they are never picked for the user. An
     * Excimer older than 1.2.4 is used in the CLI only when the user
     * names it: a CLI process always exits right after its request.
     *
     * @return string|null
     */
    public static function resolve($choice, $sapi = PHP_SAPI)
    {
        $excimer = class_exists('ExcimerProfiler', false);
        if ($choice === 'excimer') {
            return $excimer ? 'excimer' : null;
        }
        if ($choice === 'xhprof') {
            return function_exists('xhprof_enable') ? 'xhprof' : null;
        }
        if ($choice === 'tideways') {
            return function_exists('tideways_xhprof_enable') ? 'tideways' : null;
        }
        if ($choice === 'auto' && $excimer && ($sapi !== 'cli' || self::excimerIsSafe())) {
            return 'excimer';
        }
        return null;
    }

    /** Whether the installed Excimer has the 1.2.4 timer rewrite. */
    public static function excimerIsSafe()
    {
        $version = phpversion('excimer');
        return is_string($version) && version_compare($version, self::EXCIMER_SAFE_VERSION, '>=');
    }

    /**
     * Starts Excimer for one request: wall-clock sampling (EXCIMER_REAL is
     * its default), at most $maxDepth frames per sample, the log folded
     * every FLUSH_SAMPLES samples. Returns the profiler, the hrtime just
     * before its timer started and the draw that staggered its first tick
     * (null for Excimer 1.2.4 and later, or when $betweenTicks is false:
     * then stopExcimer() stops at once), which stopExcimer() needs, or null.
     * The draw is kept, not turned into the tick's offset here: that takes
     * arithmetic on floats, which on some CPUs slows the rest of the
     * request (see Agent::startNs()), so stopExcimer() does it, after the
     * application ran.
     *
     * @return array{0:\ExcimerProfiler,1:int,2:int|null}|null
     */
    public static function startExcimer($periodMs, $maxDepth, $betweenTicks = true)
    {
        try {
            self::$absorbed = [];
            self::$absorbedEvents = 0;
            self::$absorbedOverflow = 0;
            $p = new \ExcimerProfiler();
            $draw = null;
            if (!$betweenTicks || self::excimerIsSafe()) {
                $p->setPeriod($periodMs / 1000);
            } else {
                // setPeriod() staggers the first tick by a random fraction of
                // the period, drawn from mt_rand()'s generator: seeded here
                // with a fresh CSPRNG value, that draw is known, and so is
                // when every tick is due (stopExcimer() needs it). The agent
                // runs before the application, so an application that seeds
                // mt_rand() itself still does so after this; one that does
                // not gets a sequence seeded from the CSPRNG, as PHP's own.
                $seed = random_int(0, 0x7fffffff);
                mt_srand($seed);
                $draw = mt_rand(); // php_mt_rand() >> 1
                mt_srand($seed);
                $p->setPeriod($periodMs / 1000);
            }
            $p->setMaxDepth($maxDepth);
            $p->setFlushCallback([self::class, 'absorb'], self::FLUSH_SAMPLES);
            $t = hrtime(true);
            $p->start();
            return [$p, $t, $draw];
        } catch (\Throwable $e) {
            return null;
        }
    }

    /** Excimer's flush callback: folds a full log into the bounded counts. */
    public static function absorb($log)
    {
        try {
            self::$absorbedEvents += (int) $log->getEventCount();
            self::$absorbedOverflow += self::countCollapsed((string) $log->formatCollapsed(), self::$absorbed,
                self::MAX_DISTINCT_STACKS, PHP_INT_MAX);
        } catch (\Throwable $e) {
            // Those samples are lost; the request goes on.
        }
    }

    /**
     * The offset (ns) of the first tick of a timer whose stagger was $draw
     * (mt_rand(), which is php_mt_rand() >> 1): setPeriod() waits that
     * fraction of the period before the first tick.
     */
    public static function phaseNs($draw, $periodMs)
    {
        return (int) ($draw * 2 / 4294967295 * $periodMs * 1e6);
    }

    /**
     * Stops Excimer between two ticks. The timer's ticks are due at
     * $startNs + phaseNs($draw) + k * period (CLOCK_MONOTONIC, as hrtime()).
     * It is deleted once every tick due so far has been handled (its sample
     * is in the log) and the next one is more than QUIET_MARGIN_NS away;
     * else it waits, a few dozen microseconds for a tick in flight or past a
     * tick about to come, never more than QUIET_WAIT_MAX_NS in all. Without
     * a draw (Excimer 1.2.4 and later, whose timers have no such race) it
     * stops at once. Returns the ns waited.
     */
    public static function stopExcimer(\ExcimerProfiler $p, $startNs, $periodMs, $draw = null)
    {
        $periodNs = (int) ($periodMs * 1e6);
        $phaseNs = $draw === null ? null : self::phaseNs($draw, $periodMs);
        $t0 = hrtime(true);
        $now = $t0;
        while ($phaseNs !== null && $periodNs > 0 && $now - $t0 < self::QUIET_WAIT_MAX_NS) {
            $elapsed = $now - $startNs - $phaseNs;
            $due = $elapsed < 0 ? 0 : intdiv($elapsed, $periodNs) + 1;
            $toNext = $due * $periodNs - $elapsed;
            if ($toNext < self::QUIET_MARGIN_NS) {
                usleep((int) ($toNext / 1000) + 30);
            } elseif ($due > 0 && self::$absorbedEvents + $p->getLog()->getEventCount() < $due) {
                usleep(20); // A tick in flight: its handler has not run yet.
            } else {
                break;
            }
            $now = hrtime(true);
        }
        $p->stop();
        // Excimer flushes a non-empty log when the profiler is destroyed,
        // which would call absorb() and format the whole log for nothing
        // in every request that is not kept.
        $p->clearFlushCallback();
        return $now - $t0;
    }

    /**
     * Starts xhprof or tideways_xhprof, or returns null when it fails to
     * start (the request then goes on with timing, SQL and metadata).
     *
     * @param string $kind xhprof | tideways, as resolve() returned it
     * @return self|null
     */
    public static function start($kind)
    {
        $p = new self($kind);
        try {
            if ($kind === 'tideways') {
                tideways_xhprof_enable(TIDEWAYS_XHPROF_FLAGS_CPU | TIDEWAYS_XHPROF_FLAGS_MEMORY);
            } elseif ($kind === 'xhprof') {
                xhprof_enable(XHPROF_FLAGS_CPU | XHPROF_FLAGS_MEMORY);
            } else {
                return null;
            }
            $p->running = true;
        } catch (\Throwable $e) {
            return null;
        }
        return $p;
    }

    /**
     * Stops recording and returns xhprof's edge array. Must run on every
     * request, kept or not, so no profiler outlives it.
     *
     * @return array|null
     */
    public function stop()
    {
        if (!$this->running) {
            return null;
        }
        $this->running = false;
        try {
            $raw = $this->kind === 'tideways' ? tideways_xhprof_disable() : xhprof_disable();
            return is_array($raw) ? $raw : null;
        } catch (\Throwable $e) {
            return null;
        }
    }

    /**
     * Builds the record's profile from what stop() returned.
     *
     * @param bool $compact the compact form (a few edges and leaves)
     * @return array
     */
    public function profile(array $raw, $maxItems, $deadline, $compact = false)
    {
        $profile = self::edgesFromXhprof($raw, $compact ? self::COMPACT_STACKS : $maxItems, $deadline);
        $profile = ['profiler' => $this->kind] + $profile;
        return $compact ? self::compact($profile) : $profile;
    }

    /**
     * Builds the record's profile from a stopped Excimer profiler and what
     * its flush callback folded out while it ran.
     *
     * @param bool  $compact  the compact form (a few stacks and leaves)
     * @param float $deadline hrtime (ns) after which the work is cut short
     * @return array
     */
    public static function fromExcimer(\ExcimerProfiler $excimer, $maxItems, $maxDepth, $periodMs, $deadline,
        $compact = false)
    {
        $counts = self::$absorbed;
        $overflow = self::$absorbedOverflow + self::countCollapsed((string) $excimer->getLog()->formatCollapsed(),
            $counts, self::MAX_DISTINCT_STACKS, $deadline);
        self::$absorbed = [];
        $profile = self::stacksFromCounts($counts, $compact ? self::COMPACT_STACKS : $maxItems,
            $compact ? min($maxDepth, self::COMPACT_DEPTH) : $maxDepth, $periodMs, $overflow);
        return $compact ? self::compact($profile) : $profile;
    }

    /**
     * Parses Excimer's collapsed format ("root;child;leaf 12" per line) into
     * stacks, heaviest first (kept for the tests and callers of the old name).
     */
    public static function stacksFromCollapsed($text, $maxItems, $maxDepth, $periodMs, $deadline)
    {
        $counts = [];
        $overflow = self::countCollapsed($text, $counts, PHP_INT_MAX, $deadline);
        return self::stacksFromCounts($counts, $maxItems, $maxDepth, $periodMs, $overflow);
    }

    /**
     * Adds collapsed lines to $counts (stack => samples), folding the
     * agent's own frames out of each stack first. Returns the samples that
     * did not fit under $maxDistinct distinct stacks (counted only). Stops
     * at $deadline: what was parsed so far is still true.
     */
    private static function countCollapsed($text, array &$counts, $maxDistinct, $deadline)
    {
        $overflow = 0;
        $line = strtok($text, "\n");
        $n = 0;
        while ($line !== false) {
            if ((++$n & 255) === 0 && hrtime(true) > $deadline) {
                break;
            }
            $space = strrpos($line, ' ');
            if ($space !== false) {
                $samples = (int) substr($line, $space + 1);
                if ($samples > 0) {
                    $stack = substr($line, 0, $space);
                    if (strpos($stack, self::AGENT_PREFIX) !== false || self::namesAgentFile($stack)
                        || strpos($stack, self::AGENT_FUNCTION_PREFIX) !== false) {
                        // (No strtok() here: the loop's own strtok() walks $text.)
                        $rest = ltrim($stack, ';');
                        $end = strpos($rest, ';');
                        if (self::isAgentFrame($end === false ? $rest : substr($rest, 0, $end))) {
                            // The agent's own work outside the application
                            // (its include as auto_prepend_file, its shutdown
                            // function, the wait for a quiet moment to stop
                            // the timer): not the request's time.
                            $line = strtok("\n");
                            continue;
                        }
                        $stack = self::foldAgentFrames($stack);
                    }
                    if (isset($counts[$stack])) {
                        $counts[$stack] += $samples;
                    } elseif (count($counts) < $maxDistinct) {
                        $counts[$stack] = $samples;
                    } else {
                        $overflow += $samples;
                    }
                }
            }
            $line = strtok("\n");
        }
        return $overflow;
    }

    /**
     * Removes the agent's frames from a collapsed stack: their time goes to
     * what they wrap (PDOStatement::execute under BitvilleApm\PdoStatement)
     * or, for the agent's own work at the leaf, to the caller. A marker
     * frame "\x01" is left at the end so stacksFromCounts() can count it.
     */
    private static function foldAgentFrames($stack)
    {
        $kept = [];
        $frames = explode(';', $stack);
        foreach ($frames as $frame) {
            if (!self::isAgentFrame($frame)) {
                $kept[] = $frame;
            }
        }
        // A sample inside the PDO wrapper with no frame under it is the
        // driver waiting for the database (Excimer before 1.2 shows no
        // internal frames): it stays the driver's, which is SQL time.
        $leaf = end($frames);
        if (strncmp($leaf, self::AGENT_PREFIX . 'Pdo', 15) === 0 && ($method = strstr($leaf, '::')) !== false) {
            $kept[] = (strncmp($leaf, self::AGENT_PREFIX . 'PdoStatement::', 26) === 0 ? 'PDOStatement' : 'PDO') . $method;
        }
        return implode(';', $kept) . ";\x01";
    }

    /**
     * Whether a frame is the agent's own: its classes (BitvilleApm\...), its
     * global functions (bitville_apm_...), and what profilers name by the
     * agent's files: the top level of bitville-apm.php as it is included
     * ("/path/bitville-apm.php", xhprof's "run_init::/path/...") and its
     * closures ("{closure:/path/src/Pdo.php(114)}").
     */
    private static function isAgentFrame($frame)
    {
        return strncmp($frame, self::AGENT_PREFIX, 12) === 0
            || strncmp($frame, self::AGENT_FUNCTION_PREFIX, 13) === 0
            || self::namesAgentFile($frame);
    }

    /** Whether a frame or stack names one of the agent's files: bitville-apm.php or src/. */
    private static function namesAgentFile($text)
    {
        return strpos($text, __DIR__ . DIRECTORY_SEPARATOR) !== false
            || strpos($text, dirname(__DIR__) . DIRECTORY_SEPARATOR . 'bitville-apm.php') !== false;
    }

    /** The profile object from stack counts: heaviest stacks, leaves, totals. */
    private static function stacksFromCounts(array $counts, $maxItems, $maxDepth, $periodMs, $overflow)
    {
        $merged = [];
        $folded = 0;
        $leaves = [];
        $total = $overflow;
        foreach ($counts as $stack => $samples) {
            $stack = (string) $stack;
            $len = strlen($stack);
            if ($len >= 2 && $stack[$len - 1] === "\x01") {
                $folded++;
                $stack = substr($stack, 0, $len - 2);
            }
            // Excimer 1.0 writes an empty name for some top frames: dropped, so
            // stacks that differ only by them (or by folded agent frames) merge.
            if (strpos($stack, ';;') !== false || $stack === '' || $stack[0] === ';' || substr($stack, -1) === ';') {
                $stack = implode(';', array_filter(explode(';', $stack), 'strlen'));
            }
            $merged[$stack] = (isset($merged[$stack]) ? $merged[$stack] : 0) + $samples;
            $total += $samples;
        }
        arsort($merged, SORT_NUMERIC);
        $stacks = [];
        $droppedSamples = $overflow;
        $i = 0;
        foreach ($merged as $stack => $samples) {
            $frames = $stack === '' ? [] : explode(';', (string) $stack);
            if ($frames === []) {
                $frames = ['[unknown]'];
            }
            $leaf = $frames[count($frames) - 1];
            $leaves[$leaf] = (isset($leaves[$leaf]) ? $leaves[$leaf] : 0) + $samples;
            if ($i++ >= $maxItems) {
                $droppedSamples += $samples;
                continue;
            }
            if (count($frames) > $maxDepth) {
                $frames = array_merge(['[truncated]'], array_slice($frames, -($maxDepth - 1)));
            }
            $stacks[] = ['frames' => $frames, 'samples' => $samples];
        }
        arsort($leaves, SORT_NUMERIC);
        $top = [];
        foreach (array_slice($leaves, 0, self::LEAVES, true) as $function => $samples) {
            $top[] = ['function' => Util::truncate((string) $function, 512), 'samples' => $samples];
        }
        $profile = [
            'profiler' => 'excimer',
            'period_ms' => $periodMs,
            'total_samples' => $total,
            'stacks' => $stacks,
            'dropped' => max(0, count($merged) - $maxItems),
            'dropped_samples' => $droppedSamples,
            'leaves' => $top,
        ];
        if ($folded > 0) {
            $profile['agent_folded'] = $folded;
        }
        return $profile;
    }

    /**
     * The compact form of a profile: its heaviest COMPACT_STACKS stacks or
     * edges (stacks cut to their leaf-most COMPACT_DEPTH frames) and
     * COMPACT_LEAVES leaves, under COMPACT_BYTES of JSON; what is cut is
     * counted in dropped and dropped_samples.
     */
    public static function compact(array $profile)
    {
        $profile['compact'] = true;
        foreach (['stacks', 'edges'] as $list) {
            if (!isset($profile[$list])) {
                continue;
            }
            while (count($profile[$list]) > self::COMPACT_STACKS) {
                self::dropLast($profile, $list);
            }
            if ($list === 'stacks') {
                foreach ($profile['stacks'] as $i => $s) {
                    if (count($s['frames']) > self::COMPACT_DEPTH) {
                        $profile['stacks'][$i]['frames'] = array_merge(['[truncated]'],
                            array_slice($s['frames'], -(self::COMPACT_DEPTH - 1)));
                    }
                }
            }
        }
        if (isset($profile['leaves'])) {
            $profile['leaves'] = array_slice($profile['leaves'], 0, self::COMPACT_LEAVES);
        }
        while (strlen((string) json_encode($profile, Agent::JSON_FLAGS)) > self::COMPACT_BYTES) {
            if (!empty($profile['stacks'])) {
                self::dropLast($profile, 'stacks');
            } elseif (!empty($profile['edges'])) {
                self::dropLast($profile, 'edges');
            } elseif (!empty($profile['leaves'])) {
                array_pop($profile['leaves']);
            } else {
                break;
            }
        }
        return $profile;
    }

    private static function dropLast(array &$profile, $list)
    {
        $item = array_pop($profile[$list]);
        $profile['dropped'] = (isset($profile['dropped']) ? $profile['dropped'] : 0) + 1;
        if ($list === 'stacks') {
            $profile['dropped_samples'] = (isset($profile['dropped_samples']) ? $profile['dropped_samples'] : 0)
                + $item['samples'];
        }
    }

    /**
     * Turns xhprof's "caller==>callee" => {ct, wt, cpu, mu, pmu} map into edges
     * ranked by exclusive wall time. An edge's exclusive time is estimated as
     * its share of the callee's exclusive time (callee inclusive minus its
     * children), since xhprof only measures per edge.
     *
     * Cleaned first, so that no artefact is ranked: recursion markers `f@N`
     * are folded into `f` and the self-edges that leaves (tideways writes
     * `usleep==>usleep@1` for internal functions) are dropped, their time
     * staying in `f`; the agent's own functions are folded into their
     * caller (their children are called from it); top-level calls without
     * a caller (tideways has no `main()`) get a `main()` root.
     */
    public static function edgesFromXhprof(array $raw, $maxItems, $deadline)
    {
        $clean = [];
        $agentParent = [];
        $folded = 0;
        $n = 0;
        foreach ($raw as $name => $m) {
            if ((++$n & 255) === 0 && hrtime(true) > $deadline) {
                break;
            }
            if (!is_array($m)) {
                continue;
            }
            $pos = strpos((string) $name, '==>');
            $caller = $pos === false ? null : self::unrecurse(substr($name, 0, $pos));
            $callee = self::unrecurse($pos === false ? (string) $name : substr($name, $pos + 3));
            if ($caller === $callee) {
                continue;
            }
            if (self::isAgentFrame($callee)) {
                $agentParent[$callee] = $caller;
                $folded++;
                continue;
            }
            $clean[] = [$caller, $callee, $m];
        }
        $hasMain = false;
        $topWt = 0.0;
        $byKey = [];
        foreach ($clean as $e) {
            list($caller, $callee, $m) = $e;
            // An agent frame's children are its caller's (up the chain of agent frames).
            for ($hops = 0; $caller !== null && isset($agentParent[$caller]) && $hops < 8; $hops++) {
                $caller = $agentParent[$caller];
                $folded++;
            }
            if ($caller === null && $callee === 'main()') {
                $hasMain = true;
            }
            $key = $caller . '==>' . $callee;
            $wt = isset($m['wt']) ? max(0.0, (float) $m['wt']) : 0.0;
            if (!isset($byKey[$key])) {
                $byKey[$key] = ['caller' => $caller, 'callee' => $callee, 'ct' => 0, 'wt_us' => 0.0];
            }
            $edge =& $byKey[$key];
            $edge['ct'] += isset($m['ct']) ? (int) $m['ct'] : 0;
            $edge['wt_us'] += $wt;
            foreach (['cpu' => 'cpu_us', 'mu' => 'mu', 'pmu' => 'pmu'] as $from => $to) {
                if (isset($m[$from])) {
                    $v = $from === 'cpu' ? max(0.0, (float) $m[$from]) : (int) $m[$from];
                    $edge[$to] = (isset($edge[$to]) ? $edge[$to] : 0) + $v;
                }
            }
            unset($edge);
            if ($caller === null && $callee !== 'main()') {
                $topWt += $wt;
            }
        }
        if (!$hasMain) {
            foreach ($byKey as $key => $edge) {
                if ($edge['caller'] === null) {
                    unset($byKey[$key]);
                    $edge['caller'] = 'main()';
                    $byKey['main()==>' . $edge['callee']] = $edge;
                }
            }
            if ($byKey !== []) {
                $byKey['==>main()'] = ['caller' => null, 'callee' => 'main()', 'ct' => 1, 'wt_us' => $topWt];
            }
        }
        $edges = array_values($byKey);
        $inclusive = [];
        $children = [];
        foreach ($edges as $e) {
            $inclusive[$e['callee']] = (isset($inclusive[$e['callee']]) ? $inclusive[$e['callee']] : 0) + $e['wt_us'];
            if ($e['caller'] !== null) {
                $children[$e['caller']] = (isset($children[$e['caller']]) ? $children[$e['caller']] : 0) + $e['wt_us'];
            }
        }
        $exclusive = [];
        $selfOf = [];
        foreach ($edges as $i => $e) {
            $incl = $inclusive[$e['callee']];
            $self = max(0.0, $incl - (isset($children[$e['callee']]) ? $children[$e['callee']] : 0));
            $selfOf[$e['callee']] = $self;
            $exclusive[$i] = $incl > 0 ? $e['wt_us'] * $self / $incl : 0.0;
        }
        arsort($exclusive, SORT_NUMERIC);
        $kept = [];
        $droppedWt = 0.0;
        $i = 0;
        foreach ($exclusive as $index => $excl) {
            if ($i++ < $maxItems) {
                $kept[] = $edges[$index];
            } else {
                $droppedWt += $excl;
            }
        }
        arsort($selfOf, SORT_NUMERIC);
        $leaves = [];
        foreach (array_slice($selfOf, 0, self::LEAVES, true) as $function => $wt) {
            if ($wt > 0) {
                $leaves[] = ['function' => Util::truncate((string) $function, 512), 'wt_us' => round($wt, 3)];
            }
        }
        $profile = [
            'edges' => $kept,
            'dropped' => max(0, count($edges) - $maxItems),
            'dropped_wt_us' => round($droppedWt, 3),
            'leaves' => $leaves,
        ];
        if ($folded > 0) {
            $profile['agent_folded'] = $folded;
        }
        return $profile;
    }

    /** `f@3` (xhprof's recursion depth marker) is `f`. */
    private static function unrecurse($name)
    {
        $at = strrpos($name, '@');
        return $at !== false && $at > 0 && ctype_digit(substr($name, $at + 1)) ? substr($name, 0, $at) : $name;
    }
}
