<?php
/**
 * Profiler choice and output: Excimer stacks root first with sample counts,
 * the noise filter, xhprof edges ranked by exclusive time, and the rule that
 * `auto` never picks an Excimer older than 1.2.4 (it crashes PHP).
 *
 * Excimer runs in child processes, one profiler cycle each, at 10 ms: Debian's
 * 1.0.4 is the only Excimer here, and a crash is reported as its known defect.
 */

namespace BitvilleApm\Tests;

use BitvilleApm\Profiler;

final class ProfilerTest extends AgentTestCase
{
    /**
     * auto is Excimer or nothing (issue #20 §1): web requests get any
     * Excimer, stopped between ticks (crash-free in stress/); CLI scripts
     * get an Excimer older than 1.2.4 only when named; xhprof-family
     * profilers never come from auto.
     */
    public function testAutoPicksExcimerForWebRequestsAndNeverAnXhprof()
    {
        $version = phpversion('excimer');
        $this->assertIsString($version, 'Excimer must be installed for the agent tests');
        $this->assertSame('excimer', Profiler::resolve('auto', 'fpm-fcgi'));
        $this->assertSame('excimer', Profiler::resolve('auto', 'apache2handler'));
        $this->assertSame(version_compare($version, '1.2.4', '<') ? null : 'excimer', Profiler::resolve('auto', 'cli'));
        $this->assertSame('excimer', Profiler::resolve('excimer', 'cli'), 'an explicit choice uses it');
        $this->assertNull(Profiler::resolve('xhprof'), 'xhprof is not installed here');
        $src = (string) file_get_contents(__DIR__ . '/../src/Profiler.php');
        preg_match('/function resolve\(.*?\n    }\n/s', $src, $m);
        $auto = substr($m[0], strpos($m[0], "'auto'"));
        $this->assertStringNotContainsString('xhprof', $auto, 'auto must never pick an xhprof-family profiler');
    }

    /**
     * The between-ticks stop rests on knowing when ticks are due: Excimer
     * staggers the first one by a random part of the period, drawn from
     * mt_rand()'s generator, which startExcimer() seeds so that it knows
     * the draw. No tick is ever handled before the phase says it is due
     * (that would make the stop unsafe), and most of the time every tick
     * due is handled (a handler can run late on a loaded host, which only
     * makes the stop wait).
     */
    public function testExcimerTicksAreDueWhereThePhaseSays()
    {
        if (\BitvilleApm\Profiler::excimerIsSafe()) {
            $this->assertTrue(true, 'Excimer 1.2.4+: no phase needed (stopExcimer() stops at once)');
            return;
        }
        $code = 'require ' . var_export(__DIR__ . '/../src/Util.php', true) . '; require '
            . var_export(__DIR__ . '/../src/Profiler.php', true) . ';
            $checked = 0; $early = 0; $match = 0; $phases = [];
            for ($r = 0; $r < 5; $r++) {
                list($p, $t, $draw) = \BitvilleApm\Profiler::startExcimer(10.0, 16);
                $phase = \BitvilleApm\Profiler::phaseNs($draw, 10.0);
                $phases[] = $phase;
                $end = hrtime(true) + 40e6;
                while (($now = hrtime(true)) < $end) {
                    $events = $p->getLog()->getEventCount();
                    $el = hrtime(true) - $t - $phase;
                    $due = $el < 0 ? 0 : intdiv($el, 10000000) + 1;
                    $checked++;
                    $early += $events > $due ? 1 : 0;
                    $match += $events === $due ? 1 : 0;
                }
                \BitvilleApm\Profiler::stopExcimer($p, $t, 10.0, $draw);
            }
            echo json_encode([$checked, $early, $match / max(1, $checked), min($phases), max($phases)]);';
        $run = $this->runPhp($code, '/nonexistent', [], ['auto_prepend_file' => '']);
        $this->assertSame(0, $run['signal'], 'PHP crashed: see the KNOWN DEFECT note above');
        list($checked, $early, $match, $minPhase, $maxPhase) = json_decode($run['out'], true);
        $this->assertGreaterThan(1000, $checked);
        $this->assertSame(0, $early, 'a tick was handled before the phase said it was due');
        $this->assertGreaterThan(0.5, $match, 'the phase is too early: ticks are mostly not where it says');
        $this->assertGreaterThanOrEqual(0, $minPhase);
        $this->assertLessThan(10e6, $maxPhase);
    }

    /**
     * Bounded while collected (issue #20 §1): Excimer hands its log over
     * every FLUSH_SAMPLES samples, and absorb() folds it into at most
     * MAX_DISTINCT_STACKS stacks, the rest counted as samples only. A fake
     * log stands in for Excimer's (no timer runs in this process).
     */
    public function testFlushedLogsAreFoldedIntoBoundedCounts()
    {
        $log = new class {
            public $text;
            public $events;
            public function getEventCount()
            {
                return $this->events;
            }
            public function formatCollapsed()
            {
                return $this->text;
            }
        };
        $excimer = new \ExcimerProfiler(); // never started: an empty log, no timer
        foreach (['absorbed' => [], 'absorbedEvents' => 0, 'absorbedOverflow' => 0] as $name => $value) {
            // What startExcimer() does at each request, without starting a timer in this process.
            $prop = new \ReflectionProperty(Profiler::class, $name);
            $prop->setAccessible(true);
            $prop->setValue(null, $value);
        }
        $lines = "{main};job;BitvilleApm\\Capture::before 5\n";
        for ($i = 0; $i < Profiler::MAX_DISTINCT_STACKS + 10; $i++) {
            $lines .= "{main};job;step_$i 1\n";
        }
        $log->text = $lines;
        $log->events = Profiler::MAX_DISTINCT_STACKS + 15;
        Profiler::absorb($log);
        $log->text = "{main};job;step_1 100\n";
        $log->events = 100;
        Profiler::absorb($log);
        $p = Profiler::fromExcimer($excimer, 3, 64, 10.0, PHP_INT_MAX);
        $this->assertSame(Profiler::MAX_DISTINCT_STACKS + 115, $p['total_samples']);
        $this->assertSame(['frames' => ['{main}', 'job', 'step_1'], 'samples' => 101], $p['stacks'][0]);
        $this->assertSame(['frames' => ['{main}', 'job'], 'samples' => 5], $p['stacks'][1], 'the agent folded away');
        $this->assertSame($p['total_samples'], array_sum(array_column($p['stacks'], 'samples')) + $p['dropped_samples']);
        // 11 stacks past the bound were counted as samples only; they are among the dropped.
        $this->assertSame($p['total_samples'] - 107, $p['dropped_samples']);
        $this->assertSame(Profiler::MAX_DISTINCT_STACKS - 3, $p['dropped'], 'distinct stacks past the 3 kept');
    }

    public function testAgentFramesAreFoldedIntoTheCallerTheyWrap()
    {
        $text = "{main};App\\Repo::load;BitvilleApm\\PdoStatement::execute;PDOStatement::execute 7\n"
            . "{main};App\\Repo::load;PDOStatement::execute 3\n"
            . "{main};App\\Repo::load;BitvilleApm\\PdoStatement::execute;BitvilleApm\\Capture::before 2\n"
            . "{main};busy 4\n";
        $p = Profiler::stacksFromCollapsed($text, 10, 64, 10.0, PHP_INT_MAX);
        $this->assertSame([
            ['frames' => ['{main}', 'App\\Repo::load', 'PDOStatement::execute'], 'samples' => 10],
            ['frames' => ['{main}', 'busy'], 'samples' => 4],
            ['frames' => ['{main}', 'App\\Repo::load'], 'samples' => 2],
        ], $p['stacks']);
        $this->assertSame(16, $p['total_samples']);
        $this->assertSame(2, $p['agent_folded']);
        $this->assertSame(['function' => 'PDOStatement::execute', 'samples' => 10], $p['leaves'][0]);
        $this->assertStringNotContainsString('BitvilleApm', json_encode($p));
    }

    /**
     * A sample taken while the agent ran at the top (its shutdown function,
     * waiting for a quiet moment to stop the timer) is not the request's:
     * dropped, not left as an unnamed stack; so is the top level of the
     * agent's file run as auto_prepend_file. A closure written in the
     * agent's files, and its global functions, are agent frames like its
     * methods.
     */
    public function testTheAgentsOwnSamplesAreDroppedAndItsClosuresFolded()
    {
        $src = realpath(__DIR__ . '/../src');
        $file = realpath(__DIR__ . '/../bitville-apm.php');
        $text = "BitvilleApm\\Agent::finish;BitvilleApm\\Profiler::stopExcimer;usleep 3\n"
            . ";BitvilleApm\\Agent::finish 1\n"
            . "$file 6\n"
            . "$file;BitvilleApm\\Agent::boot 2\n"
            . "{main};App\\Db::tag;{closure:$src/Pdo.php(114)};PDO::exec 2\n"
            . "{main};bitville_apm_add_context 1\n"
            . "{main};busy 4\n"
            . "{main};App\\Pages::checkout;BitvilleApm\\PdoStatement::execute 5\n";
        $p = Profiler::stacksFromCollapsed($text, 10, 64, 10.0, PHP_INT_MAX);
        $this->assertSame([
            ['frames' => ['{main}', 'App\\Pages::checkout', 'PDOStatement::execute'], 'samples' => 5],
            ['frames' => ['{main}', 'busy'], 'samples' => 4],
            ['frames' => ['{main}', 'App\\Db::tag', 'PDO::exec'], 'samples' => 2],
            ['frames' => ['{main}'], 'samples' => 1], // bitville_apm_add_context's own time
        ], $p['stacks']);
        $this->assertSame(12, $p['total_samples'], 'the driver wait under the wrapper stays SQL time');
        $this->assertStringNotContainsString('[unknown]', json_encode($p));
        $this->assertStringNotContainsString('closure', json_encode($p));
        $this->assertStringNotContainsString('bitville', json_encode($p));
    }

    public function testCompactProfileIsSmallAndKeepsTheHeaviest()
    {
        $text = '';
        for ($i = 0; $i < 100; $i++) {
            $text .= '{main};' . implode(';', array_map(function ($d) use ($i) {
                return "App\\Module$i\\Service::method_at_depth_$d";
            }, range(1, 40))) . ' ' . (1000 - $i) . "\n";
        }
        $p = Profiler::compact(Profiler::stacksFromCollapsed($text, 200, 64, 10.0, PHP_INT_MAX));
        $this->assertTrue($p['compact']);
        $this->assertLessThanOrEqual(Profiler::COMPACT_BYTES, strlen(json_encode($p)));
        $this->assertNotEmpty($p['stacks']);
        $this->assertSame(1000, $p['stacks'][0]['samples'], 'the heaviest stack stays');
        $this->assertLessThanOrEqual(Profiler::COMPACT_DEPTH, count($p['stacks'][0]['frames']));
        $this->assertSame('App\\Module0\\Service::method_at_depth_40', end($p['stacks'][0]['frames']), 'leaf side kept');
        $this->assertSame($p['total_samples'],
            array_sum(array_column($p['stacks'], 'samples')) + $p['dropped_samples']);
    }

    public function testXhprofArtefactsAreCleaned()
    {
        // tideways: no main(), `usleep==>usleep@1` self-edges, f@N recursion markers, the agent's wrapper.
        $raw = [
            'run' => ['ct' => 1, 'wt' => 1000],
            'run==>usleep' => ['ct' => 2, 'wt' => 300],
            'usleep==>usleep@1' => ['ct' => 2, 'wt' => 290],
            'run==>fib' => ['ct' => 1, 'wt' => 500],
            'fib==>fib@1' => ['ct' => 2, 'wt' => 400],
            'fib@1==>fib@2' => ['ct' => 4, 'wt' => 200],
            'run==>BitvilleApm\\PdoStatement::execute' => ['ct' => 1, 'wt' => 150],
            'BitvilleApm\\PdoStatement::execute==>PDOStatement::execute' => ['ct' => 1, 'wt' => 140],
        ];
        $p = Profiler::edgesFromXhprof($raw, 50, PHP_INT_MAX);
        $names = [];
        foreach ($p['edges'] as $e) {
            $names[] = $e['caller'] . '==>' . $e['callee'];
        }
        sort($names);
        $this->assertSame(['==>main()', 'main()==>run', 'run==>PDOStatement::execute', 'run==>fib', 'run==>usleep'], $names);
        $this->assertStringNotContainsString('@', json_encode($p));
        $this->assertStringNotContainsString('BitvilleApm', json_encode($p));
        $leaves = array_column($p['leaves'], 'wt_us', 'function');
        $this->assertEquals(500, $leaves['fib'], 'recursion stays in fib');
        $this->assertEquals(300, $leaves['usleep']);
    }

    public function testExcimerStacksAreRootFirstWithSampleCounts()
    {
        if (!class_exists('ExcimerProfiler', false)) {
            $this->markTestSkipped('Excimer is not installed');
        }
        $env = $this->setUpAgent(['profiling' => ['profiler' => 'excimer', 'period_ms' => 10]]);
        $code = 'function busy_leaf() { $t = hrtime(true); while (hrtime(true) - $t < 150e6) {} }'
            . ' function busy_caller() { busy_leaf(); } busy_caller();';
        $run = $this->runPhp($code, $env['config']);
        $this->assertSame(0, $run['signal'], 'PHP crashed: see the KNOWN DEFECT note above');
        $this->assertSilent($run);
        $profile = $this->spoolRecords($env['spool'])[0]['profile'];
        $this->assertSame('excimer', $profile['profiler']);
        $this->assertEquals(10, $profile['period_ms']);
        $this->assertGreaterThanOrEqual(8, $profile['total_samples']);
        $top = $profile['stacks'][0];
        $this->assertSame('busy_leaf', end($top['frames']), 'leaf last');
        $this->assertSame('busy_caller', $top['frames'][count($top['frames']) - 2]);
        $this->assertGreaterThanOrEqual(8, $top['samples']);
        $sum = array_sum(array_column($profile['stacks'], 'samples')) + $profile['dropped_samples'];
        $this->assertSame($profile['total_samples'], $sum);
    }

    /**
     * Issue #23 item 1 and 5: a sampled fast request's summary carries a
     * compact profile (weighted by sampling_weight in the report) and the
     * request's user and system CPU time.
     */
    public function testSummaryRecordCarriesCompactProfileAndCpuTimes()
    {
        $env = $this->setUpAgent(['general' => ['threshold_ms' => 10000, 'sample_rate' => 1],
            'profiling' => ['profiler' => 'excimer', 'period_ms' => 10]]);
        $code = 'function summary_leaf() { $t = hrtime(true); while (hrtime(true) - $t < 120e6) {} }'
            . ' function summary_caller() { summary_leaf(); } summary_caller();';
        $run = $this->runPhp($code, $env['config']);
        $this->assertSame(0, $run['signal'], 'PHP crashed: see the KNOWN DEFECT note above');
        $this->assertSilent($run);
        $records = $this->spoolRecords($env['spool']);
        $r = $records[0];
        $this->assertSame('summary', $r['record_type']);
        $this->assertTrue($r['profile']['compact']);
        $this->assertLessThanOrEqual(2048, strlen(json_encode($r['profile'])));
        $this->assertSame('summary_leaf', end($r['profile']['stacks'][0]['frames']));
        $this->assertSame('summary_leaf', $r['profile']['leaves'][0]['function']);
        $this->assertGreaterThanOrEqual(8, $r['profile']['leaves'][0]['samples']);
        $this->assertGreaterThan(50, $r['resources']['cpu_user_ms'] + $r['resources']['cpu_system_ms']);
        $this->assertArrayHasKey('cpu_system_ms', $r['resources']);
    }

    public function testNoiseFilterKeepsHeaviestStacksAndCountsTheRest()
    {
        $text = "a;b;c 5\na;b;d 1\na;e 9\na;b;c 2\nroot;x;y;z;w 3\n";
        $p = Profiler::stacksFromCollapsed($text, 2, 3, 10.0, PHP_INT_MAX);
        $this->assertSame(20, $p['total_samples']);
        $this->assertSame([['frames' => ['a', 'e'], 'samples' => 9], ['frames' => ['a', 'b', 'c'], 'samples' => 7]],
            $p['stacks']);
        $this->assertSame(2, $p['dropped']);
        $this->assertSame(4, $p['dropped_samples']);
        $deep = Profiler::stacksFromCollapsed($text, 10, 3, 10.0, PHP_INT_MAX);
        $this->assertContains(['frames' => ['[truncated]', 'z', 'w'], 'samples' => 3], $deep['stacks']);
    }

    public function testXhprofEdgesRankedByExclusiveTime()
    {
        // main() 100 us inclusive: calls slow (60 us, itself calls leaf 50 us) and fast (30 us).
        $raw = [
            'main()' => ['ct' => 1, 'wt' => 100, 'cpu' => 90, 'mu' => 10, 'pmu' => 20],
            'main()==>slow' => ['ct' => 1, 'wt' => 60, 'cpu' => 50, 'mu' => 5, 'pmu' => 5],
            'slow==>leaf' => ['ct' => 3, 'wt' => 50, 'cpu' => 40, 'mu' => 1, 'pmu' => 1],
            'main()==>fast' => ['ct' => 2, 'wt' => 30, 'cpu' => 30, 'mu' => 1, 'pmu' => 1],
        ];
        $p = Profiler::edgesFromXhprof($raw, 2, PHP_INT_MAX);
        // Exclusive: leaf 50, fast 30, slow 10, main 10.
        $this->assertSame(['leaf', 'fast'], array_column($p['edges'], 'callee'));
        $this->assertSame('slow', $p['edges'][0]['caller']);
        $this->assertSame(3, $p['edges'][0]['ct']);
        $this->assertSame(2, $p['dropped']);
        $this->assertEquals(20, $p['dropped_wt_us']);
        $p = Profiler::edgesFromXhprof($raw, 10, PHP_INT_MAX);
        $main = array_values(array_filter($p['edges'], function ($e) {
            return $e['callee'] === 'main()';
        }))[0];
        $this->assertNull($main['caller']);
    }
}
