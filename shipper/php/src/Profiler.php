<?php
/**
 * Chooses and drives the profiler for one request, and turns its raw output
 * into the record's bounded `profile` object.
 *
 * - Excimer: wall-clock sampling (EXCIMER_REAL), stacks root first with sample
 *   counts, heaviest `maxStacks` kept.
 * - xhprof / tideways_xhprof: caller==>callee edges, heaviest `maxStacks` by
 *   (estimated) exclusive wall time kept.
 *
 * Known hazard: Excimer before 1.2.4 crashes PHP now and then (a glibc timer
 * aliasing bug, fixed upstream in 1.2.4). `auto` therefore skips it; naming
 * `excimer` explicitly is the user's informed choice and uses it anyway.
 */

namespace BitvilleApm;

final class Profiler
{
    const EXCIMER_SAFE_VERSION = '1.2.4';

    /** @var string xhprof | tideways */
    public $kind;
    /** @var float */
    private $periodMs;
    /** @var bool */
    private $running = false;

    private function __construct($kind, $periodMs)
    {
        $this->kind = $kind;
        $this->periodMs = $periodMs;
    }

    /**
     * Which profiler a choice resolves to on this PHP, or null for none.
     *
     * @return string|null
     */
    public static function resolve($choice)
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
        if ($choice === 'auto') {
            if ($excimer && self::excimerIsSafe()) {
                return 'excimer';
            }
            if (function_exists('tideways_xhprof_enable')) {
                return 'tideways';
            }
            if (function_exists('xhprof_enable')) {
                return 'xhprof';
            }
        }
        return null;
    }

    /** Whether the installed Excimer has the 1.2.4 crash fix. */
    public static function excimerIsSafe()
    {
        $version = phpversion('excimer');
        return is_string($version) && version_compare($version, self::EXCIMER_SAFE_VERSION, '>=');
    }

    /**
     * Starts xhprof or tideways_xhprof, or returns null when it fails to
     * start (the request then goes on with timing, SQL and metadata).
     * Excimer is started by Agent::start() itself: it is the usual profiler,
     * and every call on that path is paid by every request.
     *
     * @param string $kind xhprof | tideways, as resolve() returned it
     * @return self|null
     */
    public static function start($kind, $periodMs)
    {
        $p = new self($kind, $periodMs);
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
     * @param array    $raw       the edge array
     * @param int      $maxItems  noise filter: heaviest edges kept
     * @param float    $deadline  hrtime (ns) after which the work is cut short
     * @return array
     */
    public function profile(array $raw, $maxItems, $deadline)
    {
        $profile = self::edgesFromXhprof($raw, $maxItems, $deadline);
        $profile['profiler'] = $this->kind;
        return $profile;
    }

    /**
     * Builds the record's profile from a stopped Excimer profiler.
     *
     * @param int      $maxItems  noise filter: heaviest stacks kept
     * @param int      $maxDepth  frames kept per stack
     * @param float    $deadline  hrtime (ns) after which the work is cut short
     * @return array
     */
    public static function fromExcimer(\ExcimerProfiler $excimer, $maxItems, $maxDepth, $periodMs, $deadline)
    {
        $text = $excimer->getLog()->formatCollapsed();
        return self::stacksFromCollapsed((string) $text, $maxItems, $maxDepth, $periodMs, $deadline);
    }

    /**
     * Parses Excimer's collapsed format ("root;child;leaf 12" per line) into
     * stacks, heaviest first. Deep stacks keep their leaf-most frames, with a
     * "[truncated]" root marker, since the leaf says where the time went.
     */
    public static function stacksFromCollapsed($text, $maxItems, $maxDepth, $periodMs, $deadline)
    {
        $counts = [];
        $total = 0;
        $line = strtok($text, "\n");
        $n = 0;
        while ($line !== false) {
            if ((++$n & 255) === 0 && hrtime(true) > $deadline) {
                break; // Out of budget: what was parsed so far is still true.
            }
            $space = strrpos($line, ' ');
            if ($space !== false) {
                $samples = (int) substr($line, $space + 1);
                if ($samples > 0) {
                    $stack = substr($line, 0, $space);
                    $counts[$stack] = (isset($counts[$stack]) ? $counts[$stack] : 0) + $samples;
                    $total += $samples;
                }
            }
            $line = strtok("\n");
        }
        arsort($counts, SORT_NUMERIC);
        $stacks = [];
        $droppedSamples = 0;
        $i = 0;
        foreach ($counts as $stack => $samples) {
            if ($i++ >= $maxItems) {
                $droppedSamples += $samples;
                continue;
            }
            // Excimer 1.0 writes an empty name for some top frames; drop those.
            $frames = array_values(array_filter(explode(';', (string) $stack), 'strlen'));
            if ($frames === []) {
                $frames = ['[unknown]'];
            }
            if (count($frames) > $maxDepth) {
                $frames = array_merge(['[truncated]'], array_slice($frames, -($maxDepth - 1)));
            }
            $stacks[] = ['frames' => $frames, 'samples' => $samples];
        }
        return [
            'profiler' => 'excimer',
            'period_ms' => $periodMs,
            'total_samples' => $total,
            'stacks' => $stacks,
            'dropped' => max(0, count($counts) - $maxItems),
            'dropped_samples' => $droppedSamples,
        ];
    }

    /**
     * Turns xhprof's "caller==>callee" => {ct, wt, cpu, mu, pmu} map into edges
     * ranked by exclusive wall time. An edge's exclusive time is estimated as
     * its share of the callee's exclusive time (callee inclusive minus its
     * children), since xhprof only measures per edge.
     */
    public static function edgesFromXhprof(array $raw, $maxItems, $deadline)
    {
        $inclusive = [];
        $children = [];
        $edges = [];
        $n = 0;
        foreach ($raw as $name => $m) {
            if ((++$n & 255) === 0 && hrtime(true) > $deadline) {
                break;
            }
            if (!is_array($m)) {
                continue;
            }
            $pos = strpos((string) $name, '==>');
            $caller = $pos === false ? null : substr($name, 0, $pos);
            $callee = $pos === false ? (string) $name : substr($name, $pos + 3);
            $wt = isset($m['wt']) ? (float) $m['wt'] : 0.0;
            $inclusive[$callee] = (isset($inclusive[$callee]) ? $inclusive[$callee] : 0) + $wt;
            if ($caller !== null) {
                $children[$caller] = (isset($children[$caller]) ? $children[$caller] : 0) + $wt;
            }
            $edge = ['caller' => $caller, 'callee' => $callee, 'ct' => isset($m['ct']) ? (int) $m['ct'] : 0,
                'wt_us' => max(0.0, $wt)];
            if (isset($m['cpu'])) {
                $edge['cpu_us'] = max(0.0, (float) $m['cpu']);
            }
            if (isset($m['mu'])) {
                $edge['mu'] = (int) $m['mu'];
            }
            if (isset($m['pmu'])) {
                $edge['pmu'] = (int) $m['pmu'];
            }
            $edges[] = $edge;
        }
        $exclusive = [];
        foreach ($edges as $i => $e) {
            $incl = $inclusive[$e['callee']];
            $self = $incl - (isset($children[$e['callee']]) ? $children[$e['callee']] : 0);
            $exclusive[$i] = $incl > 0 ? $e['wt_us'] * max(0.0, $self) / $incl : 0.0;
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
        return [
            'edges' => $kept,
            'dropped' => max(0, count($edges) - $maxItems),
            'dropped_wt_us' => round($droppedWt, 3),
        ];
    }
}
