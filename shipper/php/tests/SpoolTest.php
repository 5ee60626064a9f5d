<?php
/**
 * Spooling under every disk fault: the record goes to the right file, or is
 * dropped and counted, and the request never notices. A broken directory
 * opens the breaker so later requests pay one stat().
 */

namespace BitvilleApm\Tests;

use BitvilleApm\Agent;
use BitvilleApm\Config;
use BitvilleApm\Spool;

final class SpoolTest extends AgentTestCase
{
    protected function tearDown(): void
    {
        Agent::reset();
        Spool::resetMemory();
        foreach ($this->mounts as $m) {
            exec('umount ' . escapeshellarg($m) . ' 2>/dev/null');
        }
        $this->mounts = [];
        parent::tearDown();
    }

    /** @var string[] */
    private $mounts = [];

    private function finishOne(Config $config)
    {
        Agent::reset();
        return Agent::start($config, false)->finish();
    }

    public function testFileIsNamedByWriterUtcHourAndPid()
    {
        $env = $this->setUpAgent();
        $result = $this->finishOne(Config::load($env['config']));
        $this->assertSame('written', $result['status']);
        $files = array_map('basename', glob($env['spool'] . '/*'));
        $this->assertSame(['php.' . gmdate('YmdH') . '.' . getmypid() . '.ndjson'], $files);
        $this->assertCount(1, $this->spoolRecords($env['spool']));
    }

    public function testSpoolFullFlagDropsAndCountsOnNextRecord()
    {
        $env = $this->setUpAgent();
        $config = Config::load($env['config']);
        touch($env['spool'] . '/.spool-full');
        $this->assertSame('spool_full', $this->finishOne($config)['status']);
        $this->assertSame('spool_full', $this->finishOne($config)['status']);
        $this->assertSame([], glob($env['spool'] . '/*.ndjson'), 'nothing is written while the flag is up');
        unlink($env['spool'] . '/.spool-full');
        $this->assertSame('written', $this->finishOne($config)['status']);
        $this->assertSame('written', $this->finishOne($config)['status']);
        $records = $this->spoolRecords($env['spool']);
        $this->assertSame(2, $records[0]['agent']['dropped_records']);
        $this->assertSame(0, $records[1]['agent']['dropped_records'], 'the count resets once reported');
    }

    public function testMissingDirOpensBreakerAfterRepeatedFailures()
    {
        // The breaker's end is stored in whole seconds, so a cool-down of N
        // seconds lasts between N-1 and N: 3 leaves the child below at least
        // 2 s to start (1 s made this test fail when a slow child started
        // after the end).
        $env = $this->setUpAgent(['transmission' => ['breaker_failures' => 3, 'breaker_cooldown_s' => 3]]);
        rmdir($env['spool']);
        $config = Config::load($env['config']);
        for ($i = 0; $i < 3; $i++) {
            $this->assertSame('write_failed', $this->finishOne($config)['status']);
        }
        $this->assertSame('breaker_open', $this->finishOne($config)['status']);
        mkdir($env['spool']);
        // Another process sees the breaker through its file: it skips writing
        // even though the directory is back.
        $run = $this->runPhp('echo "ok";', $env['config']);
        $this->assertSilent($run, 'ok');
        $this->assertSame([], glob($env['spool'] . '/*.ndjson'));
        // After the cool-down the next write goes through and closes it.
        sleep(4);
        Spool::resetMemory();
        $result = $this->finishOne($config);
        $this->assertSame('written', $result['status']);
        // 3 failed writes + 1 skipped here; the child counted its own drop under its pid.
        $this->assertSame(4, json_decode($result['line'], true)['agent']['dropped_records']);
        $this->assertSame([], glob($env['state'] . '/bitville-apm-*/*.breaker'));
        $this->spoolRecords($env['spool']);
    }

    public function testBrokenDiskCostsLittleOnceBreakerIsOpen()
    {
        $env = $this->setUpAgent(['transmission' => ['spool_dir' => '/nonexistent/bitville/spool']]);
        $config = Config::load($env['config']);
        for ($i = 0; $i < 3; $i++) {
            $this->finishOne($config);
        }
        $t = hrtime(true);
        for ($i = 0; $i < 200; $i++) {
            $this->assertSame('breaker_open', $this->finishOne($config)['status']);
        }
        $perRequestUs = (hrtime(true) - $t) / 200 / 1000;
        $this->assertLessThan(500, $perRequestUs, 'an open breaker must make requests cheap');
    }

    public function testUnwritableDirAsUnprivilegedUserIsSilent()
    {
        if (posix_getuid() !== 0) {
            $this->markTestSkipped('needs root to run the child as nobody');
        }
        $env = $this->setUpAgent();
        chmod($env['spool'], 0555);
        chmod($env['state'], 0777);
        chmod($env['root'], 0755);
        chmod($env['config'], 0644);
        $run = $this->runPhp('echo "ok";', $env['config'],
            ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups']);
        $this->assertSilent($run, 'ok');
        $this->assertSame([], glob($env['spool'] . '/*'));
        $this->assertCount(1, glob($env['state'] . '/bitville-apm-*/*.breaker'), 'the failure was counted');
    }

    public function testFullDiskLeavesNoPartialLine()
    {
        $env = $this->setUpAgent(['general' => ['threshold_ms' => 0]]);
        $this->mountTmpfs($env['spool'], 'size=64k');
        file_put_contents($env['spool'] . '/filler', str_repeat('x', 64 * 1024 - 1500));
        // Each record is ~1.2 KB with a big context: the first fits, the next fail.
        $code = 'bitville_apm_add_context("blob", str_repeat("y", 200)); echo "ok";';
        for ($i = 0; $i < 4; $i++) {
            $this->assertSilent($this->runPhp($code, $env['config']), 'ok');
        }
        $this->assertLessThan(4, count($this->spoolRecords($env['spool'])), 'the disk was not full');
        $this->assertNotEmpty(glob($env['state'] . '/bitville-apm-*/*.drops'), 'dropped records are counted');
    }

    public function testReadOnlyFilesystemIsSilent()
    {
        $env = $this->setUpAgent();
        $this->mountTmpfs($env['spool'], 'size=64k,ro');
        $this->assertSilent($this->runPhp('echo "ok";', $env['config']), 'ok');
        $this->assertSame([], glob($env['spool'] . '/*'));
    }

    /**
     * The state-file attack of issue #20 §3: the breaker and drop counters
     * used to live in the shared temp dir, so any local user could silence
     * the agent (a breaker dated in the future) or, with a symlink, make the
     * PHP user append to a file of their choosing. They now live in a
     * private folder that must be this user's, 0700, and not a symlink; a
     * state file that is a symlink is never followed.
     */
    public function testStateFilesPlantedByAnotherUserAreRefused()
    {
        if (posix_geteuid() !== 0) {
            $this->fail('this test plays another user with chown: run it as root (as CI does)');
        }
        $env = $this->setUpAgent();
        chmod($env['state'], 01777); // shared like /tmp
        $config = Config::load($env['config']);
        $mine = $env['state'] . '/bitville-apm-' . posix_geteuid();
        $victim = $env['root'] . '/victim.txt';
        file_put_contents($victim, "precious\n");
        $key = substr(md5($env['spool']), 0, 12);

        // 1. Another user made the folder first, open to all, with a breaker
        //    dated in the future and a drop counter linked to the victim.
        mkdir($mine, 0777);
        chmod($mine, 0777);
        touch($mine . '/' . $key . '.breaker', time() + 3600);
        symlink($victim, $mine . '/' . $key . '.' . getmypid() . '.drops');
        exec('chown -hR nobody ' . escapeshellarg($mine));
        $this->assertSame('written', $this->finishOne($config)['status'], 'a planted breaker silenced the agent');
        touch($env['spool'] . '/.spool-full');
        $this->assertSame('spool_full', $this->finishOne($config)['status']);
        $this->assertSame("precious\n", file_get_contents($victim), 'the agent appended through a planted symlink');
        unlink($env['spool'] . '/.spool-full');
        $this->assertSame(['.', '..', $key . '.' . getmypid() . '.drops', $key . '.breaker'], scandir($mine),
            'nothing of ours in their folder');
        $this->assertGreaterThan(time() + 3000, filemtime($mine . '/' . $key . '.breaker'));
        exec('rm -rf ' . escapeshellarg($mine));

        // 2. The folder is a symlink to a folder that looks right (ours,
        //    0700) and holds a breaker dated in the future.
        $elsewhere = $env['root'] . '/elsewhere';
        mkdir($elsewhere, 0700);
        touch($elsewhere . '/' . $key . '.breaker', time() + 3600);
        symlink($elsewhere, $mine);
        Spool::resetMemory();
        $this->assertSame('written', $this->finishOne($config)['status'], 'a symlinked state folder was followed');
        unlink($mine);

        // 3. Our own folder, but a state file in it is a symlink: removed, not followed.
        $this->assertSame('written', $this->finishOne($config)['status']);
        $this->assertTrue(is_dir($mine) && !is_link($mine));
        $this->assertSame(0700, fileperms($mine) & 0777, 'the folder is made private');
        symlink($victim, $mine . '/' . $key . '.' . getmypid() . '.drops');
        touch($env['spool'] . '/.spool-full');
        $this->assertSame('spool_full', $this->finishOne($config)['status']);
        $this->assertSame("precious\n", file_get_contents($victim), 'a symlinked counter was followed');
        $this->assertFalse(is_link($mine . '/' . $key . '.' . getmypid() . '.drops'));
        unlink($env['spool'] . '/.spool-full');
        $r = $this->finishOne($config);
        $this->assertSame(1, json_decode($r['line'], true)['agent']['dropped_records'], 'the drop is still counted');
        $this->spoolRecords($env['spool']);
    }

    private function mountTmpfs($dir, $options)
    {
        exec('mount -t tmpfs -o ' . escapeshellarg($options) . ' tmpfs ' . escapeshellarg($dir) . ' 2>&1', $out, $code);
        if ($code !== 0) {
            $this->markTestSkipped('cannot mount a tmpfs here (needs root): ' . implode(' ', $out));
        }
        $this->mounts[] = $dir;
    }
}
