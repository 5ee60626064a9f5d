<?php
/**
 * Shared helpers for the agent's PHPUnit tests: temporary folders, config
 * files, child PHP processes (the agent runs at include and shutdown, so most
 * behaviour is observed from a real process), and spool reading with schema
 * validation of every line.
 */

namespace BitvilleApm\Tests;

use PHPUnit\Framework\TestCase;

abstract class AgentTestCase extends TestCase
{
    const AGENT = __DIR__ . '/../../bitville-apm.php';
    const SCHEMA = __DIR__ . '/../../../../schemas/request.schema.json';

    /** @var string[] Folders removed after each test. */
    private $temps = [];

    protected function tearDown(): void
    {
        foreach ($this->temps as $dir) {
            exec('rm -rf ' . escapeshellarg($dir));
            // Copies the test process itself compiled (Config::load() in
            // this process uses the real temp dir).
            foreach (glob(sys_get_temp_dir() . '/bitville-apm-*/config.' . crc32($dir . '/profiling.ini') . '.*') ?: [] as $f) {
                unlink($f);
            }
        }
        $this->temps = [];
        $this->childTemp = null;
    }

    /** A fresh temporary folder, removed after the test. */
    protected function tempDir($mode = 0755)
    {
        $dir = sys_get_temp_dir() . '/bitville-apm-test-' . bin2hex(random_bytes(6));
        mkdir($dir, 0755, true);
        chmod($dir, $mode);
        $this->temps[] = $dir;
        return $dir;
    }

    /**
     * Writes an INI config; $sections overrides the test defaults (agent on,
     * everything kept, no profiler, a private spool and state folder, a 5 s budget).
     *
     * @return array{config: string, spool: string, state: string}
     */
    protected function setUpAgent(array $sections = [])
    {
        $root = $this->tempDir();
        $spool = $root . '/spool';
        $state = $root . '/state';
        mkdir($spool);
        mkdir($state);
        $ini = array_replace_recursive([
            'general' => ['enabled' => 'true', 'threshold_ms' => 0, 'project_name' => 'test-app', 'sample_rate' => 1],
            'profiling' => ['profiler' => 'none'],
            // A wide budget: on a loaded 2-core host one round trip can pass
            // 50 ms; the budget tests set their own.
            'transmission' => ['spool_dir' => $spool, 'state_dir' => $state, 'timeout_ms' => 5000],
        ], $sections);
        $text = '';
        foreach ($ini as $section => $keys) {
            $text .= "[$section]\n";
            foreach ($keys as $k => $v) {
                $text .= $k . ' = "' . $v . "\"\n";
            }
        }
        file_put_contents($root . '/profiling.ini', $text);
        return ['config' => $root . '/profiling.ini', 'spool' => $spool, 'state' => $state, 'root' => $root];
    }

    /**
     * Runs PHP code in a child process with the agent included first (as
     * auto_prepend_file would), display_errors=1 and error_reporting=E_ALL.
     *
     * @param string   $code   PHP code without the opening tag
     * @param string   $config path for BITVILLE_APM_CONFIG
     * @param string[] $prefix command words before php (setpriv ...)
     * @return array{out: string, err: string, code: int, signal: int}
     */
    protected function runPhp($code, $config, array $prefix = [], array $ini = [])
    {
        $dir = $this->tempDir();
        $script = $dir . '/script.php';
        file_put_contents($script, "<?php\n" . $code);
        chmod($dir, 0755);
        chmod($script, 0644);
        $cmd = array_merge($prefix, [PHP_BINARY]);
        foreach ($this->phpIni($ini) as $k => $v) {
            $cmd[] = '-d';
            $cmd[] = $k . '=' . $v;
        }
        $cmd[] = $script;
        return $this->runCommand($cmd, ['BITVILLE_APM_CONFIG' => $config]);
    }

    /**
     * PHP settings for children: the agent prepended, every error shown, and
     * a temp dir of the test's own, so compiled configs (Config::cacheDir())
     * land there and go with it.
     */
    protected function phpIni(array $extra = [])
    {
        return array_merge([
            'display_errors' => '1',
            'display_startup_errors' => '1',
            'error_reporting' => (string) E_ALL,
            'auto_prepend_file' => realpath(self::AGENT),
            'sys_temp_dir' => $this->childTempDir(),
        ], $extra);
    }

    /** @var string|null */
    private $childTemp;

    /** The children's temp dir: world-writable and sticky like /tmp, so any user can make its cache dir. */
    protected function childTempDir()
    {
        if ($this->childTemp === null || !is_dir($this->childTemp)) {
            $this->childTemp = $this->tempDir(01777);
        }
        return $this->childTemp;
    }

    /**
     * Runs a command with extra environment, capturing output through files.
     * A child killed by a signal while Excimer was in use is the known Excimer
     * 1.0.4 defect (fixed in 1.2.4): it is reported on STDERR, never hidden.
     */
    protected function runCommand(array $cmd, array $env = [])
    {
        $dir = $this->tempDir();
        $spec = [0 => ['file', '/dev/null', 'r'], 1 => ['file', $dir . '/out', 'w'], 2 => ['file', $dir . '/err', 'w']];
        $proc = proc_open($cmd, $spec, $pipes, null, array_merge(getenv(), $env));
        $this->assertIsResource($proc, 'cannot start ' . implode(' ', $cmd));
        do {
            usleep(2000);
            $status = proc_get_status($proc);
        } while ($status['running']);
        proc_close($proc);
        $signal = $status['signaled'] ? $status['termsig'] : 0;
        if ($signal !== 0) {
            fwrite(STDERR, "\nKNOWN DEFECT? PHP child died with signal $signal: " . implode(' ', $cmd)
                . "\n  Excimer " . phpversion('excimer') . " (< 1.2.4) crashes PHP now and then (glibc timer aliasing bug,"
                . " fixed in Excimer 1.2.4); a crash outside Excimer is a real failure.\n");
        }
        return [
            'out' => (string) file_get_contents($dir . '/out'),
            'err' => (string) file_get_contents($dir . '/err'),
            'code' => $status['exitcode'],
            'signal' => $signal,
        ];
    }

    /**
     * Every line of every spool file in $dir, decoded. Each line is checked
     * against schemas/request.schema.json here and, when BITVILLE_VALIDATE
     * names the Rust validator, by it too; any problem fails the test.
     *
     * @return array[] records as associative arrays
     */
    protected function spoolRecords($dir)
    {
        $files = glob($dir . '/*.ndjson');
        $records = [];
        foreach ($files as $file) {
            $this->assertMatchesRegularExpression('/^php\.[0-9]{10}\.[0-9]+\.ndjson$/', basename($file));
            $text = (string) file_get_contents($file);
            $this->assertTrue($text === '' || substr($text, -1) === "\n", "$file ends with a partial line");
            foreach (explode("\n", rtrim($text, "\n")) as $i => $line) {
                if ($line === '') {
                    continue;
                }
                $problems = SchemaCheck::line($line, self::SCHEMA);
                $this->assertSame([], $problems, basename($file) . ':' . ($i + 1) . ' breaks the schema');
                $records[] = json_decode($line, true);
            }
        }
        self::validateWithRust($files);
        return $records;
    }

    /** Runs the Rust validator named by BITVILLE_VALIDATE over spool files. */
    protected static function validateWithRust(array $files)
    {
        $validator = getenv('BITVILLE_VALIDATE');
        if ($validator === false || $validator === '' || $files === []) {
            return;
        }
        $cmd = $validator . ' ' . implode(' ', array_map('escapeshellarg', $files)) . ' 2>&1';
        exec($cmd, $output, $code);
        self::assertSame(0, $code, "the Rust validator refused spool lines:\n" . implode("\n", $output));
    }

    /** Asserts that a child produced no output at all and exited normally. */
    protected function assertSilent(array $run, $expectedOut = '')
    {
        $this->assertSame(0, $run['signal'], 'PHP child crashed');
        $this->assertSame($expectedOut, $run['out'], 'the agent changed the output');
        $this->assertSame('', $run['err'], 'the agent wrote to stderr');
    }
}
