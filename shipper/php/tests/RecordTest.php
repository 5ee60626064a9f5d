<?php
/**
 * What a request's record holds: the keep rule and sampling weight, fatal
 * errors and exit(), context, trimming over the size cap; and that the agent
 * never prints, warns or changes the exit status.
 */

namespace BitvilleApm\Tests;

use BitvilleApm\Agent;
use BitvilleApm\Config;

final class RecordTest extends AgentTestCase
{
    public function testSlowRequestGetsFullRecordWithWeightOne()
    {
        $env = $this->setUpAgent(['general' => ['threshold_ms' => 50, 'sample_rate' => 0]]);
        $run = $this->runPhp('usleep(80000); bitville_apm_add_context("user_id", 42);', $env['config']);
        $this->assertSilent($run);
        $records = $this->spoolRecords($env['spool']);
        $this->assertCount(1, $records);
        $r = $records[0];
        $this->assertSame('full', $r['record_type']);
        $this->assertEquals(1, $r['sampling_weight']);
        $this->assertGreaterThanOrEqual(50, $r['duration_ms']);
        $this->assertSame(['user_id' => 42], $r['context']);
        $this->assertSame('test-app', $r['project']);
        $this->assertSame('cli', $r['runtime']['sapi']);
    }

    /**
     * A request starts when the SAPI took it (REQUEST_TIME_FLOAT), not when
     * the agent was included: what PHP did before counts. Here the request
     * is made to look 300 ms older before the agent boots.
     */
    public function testTheDurationCountsFromWhenTheSapiTookTheRequest()
    {
        $env = $this->setUpAgent(['general' => ['threshold_ms' => 200, 'sample_rate' => 0]]);
        $prepend = $this->tempDir() . '/prepend.php';
        file_put_contents($prepend, "<?php\n\$_SERVER['REQUEST_TIME_FLOAT'] -= 0.3;\nrequire "
            . var_export(realpath(self::AGENT), true) . ";\n");
        $run = $this->runPhp('echo "x";', $env['config'], [], ['auto_prepend_file' => $prepend]);
        $this->assertSilent($run, 'x');
        $records = $this->spoolRecords($env['spool']);
        $this->assertCount(1, $records, 'kept in full: over the threshold with the time before the agent');
        $this->assertGreaterThanOrEqual(300, $records[0]['duration_ms']);
        $this->assertLessThan(2000, $records[0]['duration_ms']);
    }

    public function testFastRequestIsNotKeptWhenSamplingIsOff()
    {
        $env = $this->setUpAgent(['general' => ['threshold_ms' => 10000, 'sample_rate' => 0]]);
        $this->assertSilent($this->runPhp('echo "x";', $env['config']), 'x');
        $this->assertSame([], $this->spoolRecords($env['spool']));
    }

    /**
     * Summaries stand for 1/sample_rate requests each; with 400 fast requests
     * at 25%, about 100 are kept (binomial sd ~9, the bounds are ~5 sd).
     */
    public function testFastRequestSummaryCarriesSamplingWeight()
    {
        $env = $this->setUpAgent(['general' => ['threshold_ms' => 10000, 'sample_rate' => 0.25]]);
        $config = Config::load($env['config']);
        $kept = 0;
        for ($i = 0; $i < 400; $i++) {
            Agent::reset();
            $result = Agent::start($config, false)->finish();
            $kept += $result['status'] === 'written' ? 1 : 0;
            $this->assertContains($result['status'], ['written', 'not_kept']);
        }
        Agent::reset();
        $this->assertGreaterThan(55, $kept);
        $this->assertLessThan(145, $kept);
        $records = $this->spoolRecords($env['spool']);
        $this->assertCount($kept, $records);
        foreach ($records as $r) {
            $this->assertSame('summary', $r['record_type']);
            $this->assertEquals(4, $r['sampling_weight']);
            $this->assertArrayNotHasKey('profile', $r);
        }
    }

    public function testFatalErrorIsStillRecordedAndOutputUnchanged()
    {
        $env = $this->setUpAgent(['general' => ['threshold_ms' => 10000, 'sample_rate' => 0]]);
        $code = 'echo "before\n"; bitville_undefined_function();';
        $with = $this->runPhp($code, $env['config']);
        $without = $this->runPhp($code, $env['config'], [], ['auto_prepend_file' => '']);
        $this->assertSame(255, $with['code']);
        $this->assertSame($without['code'], $with['code']);
        $this->assertSame(self::unpath($without['out']), self::unpath($with['out']));
        $this->assertStringContainsString('bitville_undefined_function', $with['out']);
        $records = $this->spoolRecords($env['spool']);
        $this->assertCount(1, $records, 'a fatal error is kept even under the threshold');
        $this->assertSame('full', $records[0]['record_type']);
        $this->assertSame(E_ERROR, $records[0]['error']['type']);
        $this->assertSame('E_ERROR', $records[0]['error']['type_name']);
        $this->assertStringContainsString('bitville_undefined_function', $records[0]['error']['message']);
    }

    /**
     * Issue #20 §5: after an out-of-memory fatal error the agent lifts the
     * memory limit to write its record, and must put it back for the
     * application's own shutdown functions, which run after the agent's.
     */
    public function testMemoryLimitIsRestoredAfterOutOfMemory()
    {
        $env = $this->setUpAgent(['general' => ['threshold_ms' => 10000, 'sample_rate' => 0]]);
        $code = 'register_shutdown_function(function () { echo "\nlimit after: ", ini_get("memory_limit"), "\n"; });'
            . ' $a = []; while (true) { $a[] = str_repeat("x", 1 << 20); }';
        $run = $this->runPhp($code, $env['config'], [], ['memory_limit' => '32M']);
        $this->assertSame(0, $run['signal']);
        $this->assertStringContainsString('Allowed memory size', $run['out']);
        $this->assertStringContainsString("limit after: 32M\n", $run['out']);
        $records = $this->spoolRecords($env['spool']);
        $this->assertCount(1, $records, 'the out-of-memory request is recorded');
        $this->assertStringStartsWith('Allowed memory size', $records[0]['error']['message']);
    }

    public function testExitIsStillRecordedWithItsStatusKept()
    {
        $env = $this->setUpAgent();
        $run = $this->runPhp('echo "bye"; exit(3); echo "never";', $env['config']);
        $this->assertSame(3, $run['code']);
        $this->assertSame('bye', $run['out']);
        $records = $this->spoolRecords($env['spool']);
        $this->assertCount(1, $records);
        $this->assertNull($records[0]['error']);
    }

    /** The script's own paths differ per run; compare outputs without them. */
    private static function unpath($text)
    {
        return preg_replace('~/[^\s:]*/script\.php~', 'SCRIPT', $text);
    }

    public function testNeverOutputsWhateverFails()
    {
        $broken = [
            'garbage config' => null,
            'missing config' => '/nonexistent/bitville.ini',
            'spool dir is a file' => ['transmission' => ['spool_dir' => '/etc/hostname']],
            'missing spool and state dirs' => ['transmission' => ['spool_dir' => '/nonexistent/spool',
                'state_dir' => '/nonexistent/state']],
            'absent profiler' => ['profiling' => ['profiler' => 'xhprof']],
            'nonsense values' => ['general' => ['threshold_ms' => 'abc', 'sample_rate' => -4],
                'profiling' => ['period_ms' => 0, 'max_stacks' => -1, 'profiler' => 'bogus']],
            'invalid project' => ['general' => ['project_name' => '../../etc']],
        ];
        $code = 'bitville_apm_add_context("k", ["deep" => [1, 2, new stdClass()], "f" => NAN]);'
            . 'bitville_apm_add_context([], "bad key"); echo bitville_apm_get_correlation_id() !== "" ? "ok" : "no";';
        foreach ($broken as $label => $sections) {
            if ($sections === null) {
                $dir = $this->tempDir();
                file_put_contents($dir . '/bad.ini', "[general\nenabled = true\n=== ((\n");
                $config = $dir . '/bad.ini';
            } elseif (is_string($sections)) {
                $config = $sections;
            } else {
                $config = $this->setUpAgent($sections)['config'];
            }
            $run = $this->runPhp($code, $config);
            $this->assertSame(0, $run['code'], $label);
            $this->assertSame('ok', $run['out'], $label . ': the agent printed something');
            $this->assertSame('', $run['err'], $label);
        }
    }

    public function testCorrelationIdIsStableUuidV4()
    {
        $env = $this->setUpAgent();
        $before = microtime(true);
        // The sleep makes a ts at the request's start fail the check below.
        $run = $this->runPhp('usleep(200000); echo bitville_apm_get_correlation_id(), "\n", bitville_apm_get_correlation_id();',
            $env['config']);
        $after = microtime(true);
        $ids = explode("\n", $run['out']);
        $this->assertSame($ids[0], $ids[1]);
        $this->assertMatchesRegularExpression('/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/', $ids[0]);
        $records = $this->spoolRecords($env['spool']);
        $this->assertSame($ids[0], $records[0]['correlation_id']);
        $this->assertNotSame($ids[0], $records[0]['id'], 'the record id is its own');
        // ts is the end of the request, in UTC with six fraction digits; the
        // request started duration_ms before it (the processor relies on it).
        $this->assertMatchesRegularExpression('/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/', $records[0]['ts']);
        $end = (float) \DateTime::createFromFormat('Y-m-d\TH:i:s.u\Z', $records[0]['ts'], new \DateTimeZone('UTC'))->format('U.u');
        $start = $end - $records[0]['duration_ms'] / 1000;
        $this->assertGreaterThanOrEqual($before - 0.001, $start, 'the request starts after the test launched it');
        $this->assertLessThanOrEqual($after + 0.001, $end, 'the record is made before the process exits');
    }

    public function testOverSizeCapProfileTailIsTrimmedFirstThenSql()
    {
        $record = self::bigRecord(300, 50);
        $json = Agent::encode($record, 20000);
        $this->assertNotNull($json);
        $this->assertLessThanOrEqual(20000, strlen($json));
        $this->assertSame([], SchemaCheck::line($json, self::SCHEMA));
        $r = json_decode($json, true);
        $this->assertGreaterThan(0, $r['trimmed']['profile_items']);
        $this->assertSame(0, $r['trimmed']['sql_items'], 'SQL is cut only when the profile is not enough');
        $this->assertCount(50, $r['sql']['queries']);
        // The heaviest stacks survive; the cut ones are counted as dropped.
        $this->assertSame(1000, $r['profile']['stacks'][0]['samples']);
        $this->assertSame(300 - count($r['profile']['stacks']), $r['profile']['dropped']);
        $this->assertSame(
            $r['profile']['total_samples'],
            array_sum(array_column($r['profile']['stacks'], 'samples')) + $r['profile']['dropped_samples']
        );

        $json = Agent::encode(self::bigRecord(300, 400), 20000);
        $r = json_decode($json, true);
        $this->assertLessThanOrEqual(20000, strlen($json));
        $this->assertSame(300, $r['trimmed']['profile_items']);
        $this->assertGreaterThan(0, $r['trimmed']['sql_items']);
        $this->assertSame('select 0', substr($r['sql']['queries'][0]['sql'], 0, 8), 'the SQL tail goes, the head stays');
        $this->assertGreaterThan(20000, $r['trimmed']['bytes_before']);
    }

    public function testSmallRecordIsNotMarkedTrimmed()
    {
        $json = Agent::encode(self::bigRecord(2, 2), 524288);
        $this->assertArrayNotHasKey('trimmed', json_decode($json, true));
    }

    private static function bigRecord($stacks, $queries)
    {
        $r = [
            'v' => 1, 'kind' => 'request', 'id' => \BitvilleApm\Util::uuid4(), 'ts' => '2026-11-27T11:47:44.123456Z',
            'project' => 'p', 'host' => 'h', 'correlation_id' => \BitvilleApm\Util::uuid4(),
            'record_type' => 'full', 'sampling_weight' => 1, 'duration_ms' => 1.5,
            'runtime' => ['sapi' => 'cli', 'php_version' => PHP_VERSION, 'pid' => 1],
            'profile' => ['profiler' => 'excimer', 'period_ms' => 10, 'total_samples' => 0, 'stacks' => [],
                'dropped' => 0, 'dropped_samples' => 0],
            'sql' => ['queries' => [], 'total_count' => $queries, 'dropped' => 0, 'total_ms' => 1.0],
        ];
        for ($i = 0; $i < $stacks; $i++) {
            $samples = 1000 - $i;
            $r['profile']['stacks'][] = ['frames' => ['{main}', 'App\\Controller::action', 'fn_' . $i], 'samples' => $samples];
            $r['profile']['total_samples'] += $samples;
        }
        for ($i = 0; $i < $queries; $i++) {
            $r['sql']['queries'][] = ['sql' => 'select ' . $i . str_repeat(' ', 60), 'start_ms' => $i, 'duration_ms' => 0.1,
                'status' => 'ok'];
        }
        return $r;
    }
}
