<?php
/** `php bitville-apm.php --check`: what a person needs to know, in plain lines. */

namespace BitvilleApm\Tests;

final class CheckTest extends AgentTestCase
{
    private function check($config)
    {
        return $this->runCommand([PHP_BINARY, '-d', 'sys_temp_dir=' . $this->childTempDir(), self::AGENT, '--check'],
            ['BITVILLE_APM_CONFIG' => $config]);
    }

    public function testCheckReportsConfigProfilerSpoolAndFlag()
    {
        $env = $this->setUpAgent(['profiling' => ['profiler' => 'auto']]);
        $run = $this->check($env['config']);
        $this->assertSame(0, $run['code'], $run['out']);
        $this->assertStringContainsString($env['config'] . ' (from BITVILLE_APM_CONFIG): read', $run['out']);
        $this->assertMatchesRegularExpression('/^agent:\s+ON$/m', $run['out']);
        $this->assertMatchesRegularExpression('/^spool dir:\s+.*: writable$/m', $run['out']);
        $this->assertMatchesRegularExpression('/^spool full flag:\s+absent$/m', $run['out']);
        $this->assertStringContainsString('config cache:         ' . $this->childTempDir() . '/bitville-apm-', $run['out']);
        $this->assertSame([], glob($env['spool'] . '/{,.}[!.]*', GLOB_BRACE), 'the probe file is removed');
        if (is_string(phpversion('excimer')) && !\BitvilleApm\Profiler::excimerIsSafe()) {
            // Web requests get Excimer, stopped between ticks; CLI scripts do not (issue #20 §1).
            $this->assertMatchesRegularExpression('/^profiler:\s+auto -> excimer, period 10 ms, one timer per request,'
                . ' stopped between ticks; CLI scripts: none$/m', $run['out']);
            $this->assertMatchesRegularExpression('/^note:\s+auto does not profile CLI scripts with Excimer/m', $run['out']);
        } else {
            $this->assertMatchesRegularExpression('/^profiler:\s+auto -> excimer, period 10 ms/m', $run['out']);
        }
        $this->assertStringNotContainsString('WARNING', $run['out'], 'no xhprof-family profiler is loaded here');

        touch($env['spool'] . '/.spool-full');
        $run = $this->check($env['config']);
        $this->assertMatchesRegularExpression('/^spool full flag:\s+PRESENT/m', $run['out']);
    }

    public function testCheckShowsHowAnOldExcimerIsStopped()
    {
        $env = $this->setUpAgent(['profiling' => ['profiler' => 'auto', 'excimer_stop' => 'at_once']]);
        $run = $this->check($env['config']);
        if (\BitvilleApm\Profiler::excimerIsSafe()) {
            $this->assertMatchesRegularExpression('/^profiler:\s+auto -> excimer, period 10 ms, one timer per request$/m', $run['out']);
        } else {
            $this->assertMatchesRegularExpression('/^profiler:\s+auto -> excimer, .*, stopped at once \(excimer_stop\)/m', $run['out']);
            $this->assertMatchesRegularExpression('/^note:\s+.*pm\.max_requests can die/m', $run['out']);
        }
    }

    /** Issue #20 §5: the Excimer advice was printed even when another profiler was chosen. */
    public function testCheckGivesNoExcimerAdviceWhenNoProfilerIsWanted()
    {
        $env = $this->setUpAgent(['profiling' => ['profiler' => 'none']]);
        $run = $this->check($env['config']);
        $this->assertMatchesRegularExpression('/^profiler:\s+none -> none$/m', $run['out']);
        $this->assertDoesNotMatchRegularExpression('/^note:/m', $run['out']);
        $this->assertStringNotContainsString('upgrade', $run['out']);
    }

    public function testCheckSaysOffForMissingConfigAndFailsForBadSpool()
    {
        $run = $this->check('/nonexistent/profiling.ini');
        $this->assertSame(1, $run['code']);
        $this->assertStringContainsString('/nonexistent/profiling.ini', $run['out']);
        $this->assertMatchesRegularExpression('/^agent:\s+OFF/m', $run['out']);

        $env = $this->setUpAgent(['transmission' => ['spool_dir' => '/nonexistent/spool']]);
        $run = $this->check($env['config']);
        $this->assertSame(1, $run['code']);
        $this->assertMatchesRegularExpression('/^spool dir:\s+\/nonexistent\/spool: NOT WRITABLE/m', $run['out']);
    }

    public function testExampleConfigDocumentsEveryKeyTheAgentReads()
    {
        preg_match_all('/self::\w+\(\$([gpt]), \'(\w+)\'/', (string) file_get_contents(__DIR__ . '/../src/Config.php'), $m);
        $sections = ['g' => 'general', 'p' => 'profiling', 't' => 'transmission'];
        $read = [];
        foreach ($m[1] as $i => $s) {
            $read[] = $sections[$s] . '.' . $m[2][$i];
        }
        $example = parse_ini_file(__DIR__ . '/../profiling.ini.example', true, INI_SCANNER_RAW);
        $documented = [];
        foreach ($example as $section => $keys) {
            foreach (array_keys($keys) as $k) {
                $documented[] = "$section.$k";
            }
        }
        sort($read);
        sort($documented);
        $this->assertGreaterThan(20, count($read));
        $this->assertSame($read, $documented);
    }
}
