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
    public function testAutoNeverPicksExcimerOlderThan124()
    {
        $version = phpversion('excimer');
        if (!is_string($version)) {
            $this->markTestSkipped('Excimer is not installed');
        }
        $resolved = Profiler::resolve('auto');
        if (version_compare($version, '1.2.4', '<')) {
            $this->assertNotSame('excimer', $resolved, "auto must skip Excimer $version");
        } else {
            $this->assertSame('excimer', $resolved);
        }
        $this->assertSame('excimer', Profiler::resolve('excimer'), 'an explicit choice uses it');
        $this->assertNull(Profiler::resolve('xhprof'), 'xhprof is not installed here');
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
