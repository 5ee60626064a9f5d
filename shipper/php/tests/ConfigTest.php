<?php
/**
 * Loading the config cheaply without ever using a stale or foreign one: the
 * in-process memo, and the compiled copy that serves FPM requests (which
 * forget statics) through opcache.
 *
 * The compiled copy is observed from child processes with their own
 * sys_temp_dir (its cache dir is <sys_temp_dir>/bitville-apm-<euid>): the
 * first child writes it; editing that copy by hand then shows whether a later
 * child read the copy or the INI file.
 */

namespace BitvilleApm\Tests;

use BitvilleApm\Config;

final class ConfigTest extends AgentTestCase
{
    /** The compiled copies in a children's temp dir (as root: uid 0). */
    private function compiled($temp)
    {
        return glob($temp . '/bitville-apm-' . posix_geteuid() . '/config.*.php') ?: [];
    }

    /** Runs one request in a child and returns the project of the record it wrote (null: none). */
    private function projectOfOneRequest(array $env, $temp, array $prefix = [])
    {
        foreach (glob($env['spool'] . '/*.ndjson') as $f) {
            unlink($f);
        }
        $run = $this->runPhp('echo "ok";', $env['config'], $prefix, ['sys_temp_dir' => $temp]);
        $this->assertSilent($run, 'ok');
        $records = $this->spoolRecords($env['spool']);
        $this->assertLessThanOrEqual(1, count($records));
        return $records === [] ? null : $records[0]['project'];
    }

    /** Rewrites the project in a compiled copy, to tell a read of the copy from a read of the INI. */
    private function tamper($file, $project)
    {
        $text = (string) file_get_contents($file);
        $this->assertStringContainsString("'projectName' => 'test-app'", $text);
        file_put_contents($file, str_replace("'test-app'", "'" . $project . "'", $text));
        touch($file, time() - 60);
    }

    public function testRememberedConfigIsSharedAndAnEditIsSeenWithinASecond()
    {
        $env = $this->setUpAgent(['general' => ['threshold_ms' => 100]]);
        sleep(1); // A file changed in the current second is not remembered yet.
        Config::forget();
        $a = Config::load($env['config']);
        $this->assertSame(100.0, $a->thresholdMs);
        $this->assertSame($a, Config::load($env['config']), 'remembered, not read again');

        // Same size, same inode: only the change time tells.
        file_put_contents($env['config'], str_replace('"100"', '"250"', (string) file_get_contents($env['config'])));
        sleep(Config::REVALIDATE_S + 1);
        $this->assertSame(250.0, Config::load($env['config'])->thresholdMs);

        unlink($env['config']);
        sleep(Config::REVALIDATE_S + 1);
        $gone = Config::load($env['config']);
        $this->assertFalse($gone->enabled);
        $this->assertNotNull($gone->problem);
        Config::forget();
    }

    public function testCompiledConfigServesTheNextRequestAndAnEditIsReadAgain()
    {
        $env = $this->setUpAgent(['general' => ['threshold_ms' => 0]]);
        $temp = $this->childTempDir();
        sleep(1);
        $this->assertSame('test-app', $this->projectOfOneRequest($env, $temp));
        $copies = $this->compiled($temp);
        $this->assertCount(1, $copies, 'the first request compiled the config');
        $this->assertSame(0700, fileperms(dirname($copies[0])) & 0777, 'a private directory');

        $this->tamper($copies[0], 'from-the-copy');
        $this->assertSame('from-the-copy', $this->projectOfOneRequest($env, $temp), 'the next request read the copy');

        // An edit of the INI (same size) makes the copy stale: it is never read again.
        file_put_contents($env['config'], str_replace('test-app', 'edited-app', (string) file_get_contents($env['config'])));
        $this->assertSame('edited-app', $this->projectOfOneRequest($env, $temp), 'read from the INI in its first second');
        sleep(1);
        $this->assertSame('edited-app', $this->projectOfOneRequest($env, $temp));
        $now = $this->compiled($temp);
        $this->assertCount(1, $now, 'the stale copy was removed');
        $this->assertNotSame($copies[0], $now[0]);
        $this->assertStringContainsString("'edited-app'", (string) file_get_contents($now[0]));
    }

    public function testBrokenIniMeansOffEvenWithACompiledCopyOfTheOldOne()
    {
        $env = $this->setUpAgent(['general' => ['threshold_ms' => 0]]);
        $temp = $this->childTempDir();
        sleep(1);
        $this->assertSame('test-app', $this->projectOfOneRequest($env, $temp));
        $this->assertCount(1, $this->compiled($temp));

        file_put_contents($env['config'], "[general]\nenabled = true\nthis is = not \"INI\n[[[\n");
        sleep(1);
        $this->assertNull($this->projectOfOneRequest($env, $temp), 'a broken INI means off');
        $this->assertCount(1, $this->compiled($temp), 'a broken INI is never compiled');
        $config = Config::load($env['config']);
        $this->assertFalse($config->enabled);
        $this->assertNotNull($config->problem);
    }

    /** A copy planted where another user can write must never be included: it would run their code. */
    public function testCacheDirOthersCanWriteIsNeverUsed()
    {
        $env = $this->setUpAgent(['general' => ['threshold_ms' => 0]]);
        $temp = $this->childTempDir();
        sleep(1);
        $this->projectOfOneRequest($env, $temp);
        $copies = $this->compiled($temp);
        $this->assertCount(1, $copies);
        $this->tamper($copies[0], 'planted');

        chmod(dirname($copies[0]), 0777);
        $this->assertSame('test-app', $this->projectOfOneRequest($env, $temp), 'a world-writable cache dir is ignored');
        chmod(dirname($copies[0]), 0700);
        chown(dirname($copies[0]), 'nobody');
        $this->assertSame('test-app', $this->projectOfOneRequest($env, $temp), 'a cache dir of another user is ignored');
        chown(dirname($copies[0]), 0);
        $this->assertSame('planted', $this->projectOfOneRequest($env, $temp), 'the same dir, ours again, is used');
    }

    public function testUnwritableTempDirFallsBackToParsing()
    {
        if (posix_getuid() !== 0) {
            $this->markTestSkipped('needs root to run the child as nobody');
        }
        $env = $this->setUpAgent(['general' => ['threshold_ms' => 0]]);
        chmod($env['root'], 0755);
        chmod($env['config'], 0644);
        chmod($env['spool'], 0777);
        chmod($env['state'], 0777);
        $temp = $this->tempDir(0755); // root's: nobody cannot make its cache dir here
        sleep(1);
        $nobody = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'];
        $this->assertSame('test-app', $this->projectOfOneRequest($env, $temp, $nobody));
        $this->assertSame('test-app', $this->projectOfOneRequest($env, $temp, $nobody));
        $this->assertSame([], glob($temp . '/*'), 'nothing was written');
    }

    /**
     * open_basedir that shuts out the temp dir, then also the INI file: no
     * warning about either (the checks would print one), the INI is parsed
     * instead, and without it the agent is off.
     */
    public function testOpenBasedirWithoutTheTempDirOrTheIniIsSilent()
    {
        $env = $this->setUpAgent(['general' => ['threshold_ms' => 0]]);
        $temp = $this->childTempDir();
        $elsewhere = $this->tempDir();
        sleep(1);
        $agentDir = dirname(realpath(self::AGENT));
        $cases = [
            'temp dir shut out' => [$env['root'], $env['root'] . ':' . $agentDir, 2],
            'INI file shut out too' => [$elsewhere, $elsewhere . ':' . $env['spool'] . ':' . $agentDir, 0],
        ];
        foreach ($cases as $case => list($scriptDir, $basedir, $records)) {
            foreach (glob($env['spool'] . '/*.ndjson') as $f) {
                unlink($f);
            }
            $script = $scriptDir . '/script.php';
            file_put_contents($script, "<?php\necho 'ok';\n");
            $cmd = [PHP_BINARY];
            foreach ($this->phpIni(['sys_temp_dir' => $temp, 'open_basedir' => $basedir]) as $k => $v) {
                array_push($cmd, '-d', $k . '=' . $v);
            }
            $cmd[] = $script;
            for ($i = 0; $i < 2; $i++) {
                $this->assertSilent($this->runCommand($cmd, ['BITVILLE_APM_CONFIG' => $env['config']]), 'ok');
            }
            $this->assertCount($records, $this->spoolRecords($env['spool']), $case);
            $this->assertSame([], glob($temp . '/*'), $case . ': nothing was written outside open_basedir');
        }
    }

    /**
     * PHP's typed INI scanner reads a bare `none` as false: `profiler = none`,
     * written as the example file writes `profiler = auto`, fell back to auto
     * and profiled every request.
     */
    public function testABareNoneOrOffTurnsTheProfilerOff()
    {
        $dir = sys_get_temp_dir() . '/bitville-apm-config-' . getmypid();
        @mkdir($dir, 0700, true);
        $path = "$dir/profiling.ini";
        $cases = ['none' => 'none', 'off' => 'none', '"none"' => 'none', 'None' => 'none',
            'auto' => 'auto', 'excimer' => 'excimer', 'bogus' => 'auto'];
        foreach ($cases as $value => $expected) {
            file_put_contents($path, "[general]\nenabled = true\n[profiling]\nprofiler = $value\n");
            $this->assertSame($expected, Config::load($path)->profiler, "profiler = $value");
            unlink($path);
            Config::forget();
        }
        rmdir($dir);
    }

    /**
     * A string setting is the text written: the typed INI scanner read a bare
     * none, off, no or yes as a boolean for every key, so `project_name =
     * none` became '' and `= yes` became '1'. Booleans and numbers are still
     * read from their words and digits.
     */
    public function testStringSettingsAreTakenAsWritten()
    {
        $dir = sys_get_temp_dir() . '/bitville-apm-config-' . getmypid();
        @mkdir($dir, 0700, true);
        $path = "$dir/profiling.ini";
        foreach (['none', 'yes', 'off', 'true', '007'] as $name) {
            file_put_contents($path, "[general]\nenabled = yes\nproject_name = $name\nthreshold_ms = 250 ; ms\n"
                . "sample_rate = 1e-3\n[profiling]\nsql_comment = on\n[transmission]\nspool_dir = /srv/off/\n");
            $config = Config::load($path);
            $this->assertSame($name, $config->projectName, "project_name = $name");
            $this->assertTrue($config->enabled);
            $this->assertSame(250.0, $config->thresholdMs);
            $this->assertSame(0.001, $config->sampleRate);
            $this->assertTrue($config->sqlComment);
            $this->assertSame('/srv/off', $config->spoolDir);
            unlink($path);
            Config::forget();
        }
        rmdir($dir);
    }

    /**
     * Compiled copies are named by Config::CACHE_FORMAT: when what an INI file
     * turns into changes (parse(), apply(), its helpers, the properties and
     * their defaults), the format must change too, or agents would read copies an
     * older agent made. The fingerprint ignores comments and layout.
     */
    public function testCacheFormatChangesWithWhatAnIniTurnsInto()
    {
        $fingerprints = [1 => '0e2027627deeb71e466a78da68ccb646', 2 => 'f4381966bdc842fbb9f21ba7413a4a04',
            3 => 'a563451d50bcb03e7faa94aae55480b4', 4 => '6787f5a7f1fac5f918b879f8833eea5c',
            5 => '9497406105af2cdbbd3ad5f4ea894833'];
        $now = self::configShape();
        $this->assertArrayHasKey(Config::CACHE_FORMAT, $fingerprints,
            'new Config::CACHE_FORMAT ' . Config::CACHE_FORMAT . ": record its fingerprint $now here");
        $this->assertSame($fingerprints[Config::CACHE_FORMAT], $now,
            'Config::apply() or its properties changed: bump Config::CACHE_FORMAT and record the new fingerprint');
    }

    private static function configShape()
    {
        $class = new \ReflectionClass(Config::class);
        $lines = file((string) $class->getFileName());
        $code = '';
        foreach (['parse', 'apply', 'bool', 'num', 'str', 'csv'] as $name) {
            $m = $class->getMethod($name);
            $code .= implode('', array_slice($lines, $m->getStartLine() - 1, $m->getEndLine() - $m->getStartLine() + 1));
        }
        $tokens = '';
        foreach (token_get_all('<?php ' . $code) as $t) {
            if (!is_array($t)) {
                $tokens .= $t;
            } elseif (!in_array($t[0], [T_COMMENT, T_DOC_COMMENT, T_WHITESPACE, T_OPEN_TAG], true)) {
                $tokens .= $t[1] . ' ';
            }
        }
        $defaults = [];
        foreach ($class->getProperties(\ReflectionProperty::IS_PUBLIC) as $p) {
            if (!$p->isStatic()) {
                $defaults[$p->getName()] = $class->getDefaultProperties()[$p->getName()];
            }
        }
        return md5($tokens . serialize($defaults));
    }

    /** What a request gets from the compiled copy is exactly what parsing gives, type for type. */
    public function testCompiledCopyEqualsTheParsedConfig()
    {
        $env = $this->setUpAgent([
            'general' => ['threshold_ms' => 250.5, 'sample_rate' => 0.25, 'project_name' => "it's-app"],
            'profiling' => ['profiler' => 'excimer', 'period_ms' => 5, 'max_stacks' => 20, 'sql_bound_values' => 'false',
                'headers' => 'host, x-request-id', 'redact_patterns' => 'pin, otp'],
            'transmission' => ['timeout_ms' => 20, 'max_record_bytes' => 100000],
        ]);
        $temp = $this->childTempDir();
        sleep(1);
        $dump = 'echo json_encode([serialize(get_object_vars(\BitvilleApm\Config::load())), '
            . 'count(glob(sys_get_temp_dir() . "/bitville-apm-*/config.*.php"))]);';
        $runs = [];
        for ($i = 0; $i < 2; $i++) {
            $run = $this->runPhp($dump, $env['config'], [], ['sys_temp_dir' => $temp]);
            $this->assertSame('', $run['err']);
            $runs[] = json_decode($run['out'], true);
        }
        $this->assertSame(1, $runs[1][1], 'the second process had a compiled copy');
        $parsed = unserialize($runs[0][0]);
        $this->assertSame($parsed, unserialize($runs[1][0]));
        $this->assertSame(250.5, $parsed['thresholdMs']);
        $this->assertSame(['pin', 'otp'], $parsed['redactPatterns']);
    }
}
