<?php
/**
 * A real web SAPI (PHP's built-in server) serving a small application with and
 * without the agent prepended: every response must be byte-identical (the Date
 * header aside) in every fault case, and the agent's own time must stay within
 * its budget. Secrets planted in each channel never reach the spool.
 */

namespace BitvilleApm\Tests;

final class WebSapiTest extends AgentTestCase
{
    const APP = __DIR__ . '/fixtures/webapp';

    /** @var resource[] */
    private $servers = [];

    protected function tearDown(): void
    {
        foreach ($this->servers as $proc) {
            $pid = proc_get_status($proc)['pid'];
            posix_kill($pid, SIGTERM);
            proc_close($proc);
        }
        $this->servers = [];
        parent::tearDown();
    }

    /** Starts `php -S` on a free port; $config null = without the agent. */
    private function server($config)
    {
        $sock = socket_create(AF_INET, SOCK_STREAM, SOL_TCP);
        socket_bind($sock, '127.0.0.1', 0);
        socket_getsockname($sock, $addr, $port);
        socket_close($sock);
        $ini = $this->phpIni($config === null ? ['auto_prepend_file' => ''] : []);
        if ($config === null) {
            // The app's /db page needs the PDO class; load it without booting.
            $ini['auto_prepend_file'] = __DIR__ . '/fixtures/classes-only.php';
        }
        $cmd = [PHP_BINARY];
        foreach ($ini as $k => $v) {
            array_push($cmd, '-d', "$k=$v");
        }
        // No router script: PHP does not prepend files to a router, so /path falls
        // back to index.php as a front controller.
        array_push($cmd, '-S', '127.0.0.1:' . $port, '-t', self::APP);
        $pg = PgCluster::shared();
        $env = array_merge(getenv(), [
            'BITVILLE_APM_CONFIG' => $config === null ? '/nonexistent' : $config,
            'TEST_PG_DSN' => $pg instanceof PgCluster ? $pg->dsn() : '',
            'PHP_CLI_SERVER_WORKERS' => '1',
        ]);
        $log = $this->tempDir() . '/server.log';
        $proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', $log, 'w'], 2 => ['file', $log, 'a']],
            $pipes, null, $env);
        $this->servers[] = $proc;
        for ($i = 0; $i < 200; $i++) {
            $s = @fsockopen('127.0.0.1', $port, $errno, $errstr, 0.1);
            if ($s) {
                fclose($s);
                return $port;
            }
            usleep(20000);
        }
        $this->fail('php -S did not start: ' . file_get_contents($log));
    }

    /** Raw HTTP/1.0 exchange; returns the response with the Date header removed. */
    private static function fetch($port, $request)
    {
        $s = fsockopen('127.0.0.1', $port, $errno, $errstr, 5);
        stream_set_timeout($s, 10);
        fwrite($s, $request);
        $response = stream_get_contents($s);
        fclose($s);
        return preg_replace('/^Date: .*\r\n/m', '', (string) $response);
    }

    private static function requests()
    {
        $post = 'password=SECRET_POST_VALUE&name=bob&card%5Bnumber%5D=SECRET_CARD_NUMBER'
            . '&user%5Bpassword%5D=SECRET_NESTED_PASSWORD';
        return [
            'fast' => "GET /fast?token=SECRET_GET_VALUE&q=shoes HTTP/1.0\r\nHost: test\r\n"
                . "Referer: http://shop.test/login?session_id=SECRET_REFERER_QUERY&step=2\r\n"
                . "Authorization: Bearer SECRET_AUTH_HEADER\r\nCookie: session=SECRET_COOKIE_VALUE\r\n\r\n",
            'slow' => "GET /slow HTTP/1.0\r\nHost: test\r\n\r\n",
            'post' => "POST /post HTTP/1.0\r\nHost: test\r\nCookie: session=SECRET_COOKIE_VALUE\r\n"
                . "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " . strlen($post) . "\r\n\r\n" . $post,
            'db' => "GET /db HTTP/1.0\r\nHost: test\r\n\r\n",
            'warn' => "GET /warn HTTP/1.0\r\nHost: test\r\n\r\n",
            'fatal' => "GET /fatal HTTP/1.0\r\nHost: test\r\n\r\n",
            'exit' => "GET /exit HTTP/1.0\r\nHost: test\r\n\r\n",
            'missing' => "GET /nope HTTP/1.0\r\nHost: test\r\n\r\n",
        ];
    }

    public function testResponsesAreByteIdenticalWithAndWithoutAgentInEveryFaultCase()
    {
        $baselinePort = $this->server(null);
        $baseline = [];
        foreach (self::requests() as $name => $req) {
            $baseline[$name] = self::fetch($baselinePort, $req);
        }
        $this->assertStringContainsString('bitville_no_such_function', $baseline['fatal']);
        $this->assertStringContainsString('Warning', $baseline['warn']);
        $this->assertStringContainsString("db 16", $baseline['db']);

        $faults = [
            'healthy' => [],
            'excimer profiler' => ['profiling' => ['profiler' => 'excimer', 'period_ms' => 10]],
            // The default a user gets on stock Debian 12 (Excimer 1.0.4 only): issue #20's first "done when".
            'default profiler (auto)' => ['profiling' => ['profiler' => 'auto']],
            'absent profiler' => ['profiling' => ['profiler' => 'tideways']],
            'missing spool dir' => ['transmission' => ['spool_dir' => '/nonexistent/spool']],
            'spool dir is a file' => ['transmission' => ['spool_dir' => '/etc/hostname', 'state_dir' => '/etc/hostname']],
            'spool full' => 'flag',
            'tiny size cap' => ['transmission' => ['max_record_bytes' => 4096]],
            'broken config' => 'broken',
        ];
        foreach ($faults as $label => $sections) {
            $env = $this->setUpAgent(is_array($sections) ? $sections : []);
            if ($sections === 'flag') {
                touch($env['spool'] . '/.spool-full');
            }
            if ($sections === 'broken') {
                file_put_contents($env['config'], "[general\nenabled = true\n= ((\n");
            }
            $port = $this->server($env['config']);
            foreach (self::requests() as $name => $req) {
                $this->assertSame($baseline[$name], self::fetch($port, $req), "$label: /$name differs with the agent");
            }
            $records = $this->spoolRecords($env['spool']);
            $spooled = implode("\n", array_map('file_get_contents', glob($env['spool'] . '/*.ndjson')));
            // Every channel of issue #20 §3: query string, form fields (plain
            // and nested, joined only: card[number]), cookie and Authorization
            // headers, a URL inside another header, context, SQL bound values
            // (by name, by the column of a named value, inside a function
            // call), SQL literals, and the database's DETAIL line.
            foreach (['SECRET_GET_VALUE', 'SECRET_POST_VALUE', 'SECRET_COOKIE_VALUE', 'SECRET_AUTH_HEADER',
                         'SECRET_CONTEXT_VALUE', 'SECRET_SQL_VALUE', 'SECRET_REFERER_QUERY', 'SECRET_CARD_NUMBER',
                         'SECRET_NESTED_PASSWORD', 'SECRET_SQL_FUNCARG', 'SECRET_SQL_NAMEDCOL', 'SECRET_SQL_LITERAL',
                         'SECRET_PG_DETAIL'] as $secret) {
                $this->assertStringNotContainsString($secret, $spooled, "$label: $secret leaked");
            }
            if ($label === 'healthy' || $label === 'excimer profiler' || $label === 'default profiler (auto)') {
                $this->assertCount(count(self::requests()), $records, "$label: one record per request");
                $byPage = [];
                foreach ($records as $r) {
                    $byPage[$r['context']['page']] = $r;
                    $this->assertLessThan(50000, $r['agent']['overhead_us'], 'the agent stayed inside timeout_ms');
                }
                $this->assertSame('/fast?token=[REDACTED]&q=shoes', $byPage['/fast']['http']['url']);
                $this->assertSame(['token' => '[REDACTED]', 'q' => 'shoes'], $byPage['/fast']['http']['get']);
                $this->assertSame(['password' => '[REDACTED]', 'name' => 'bob', 'card' => ['number' => '[REDACTED]'],
                    'user' => ['password' => '[REDACTED]']], $byPage['/post']['http']['post']);
                $this->assertSame(201, $byPage['/post']['http']['status']);
                $this->assertSame(['host' => 'test', 'referer' => 'http://shop.test/login?session_id=[REDACTED]&step=2'],
                    $byPage['/fast']['http']['headers']);
                // The status the client got: output before the fatal error had sent 200 already.
                preg_match('~^HTTP/1\.[01] (\d+)~', $baseline['fatal'], $m);
                $this->assertSame((int) $m[1], $byPage['/fatal']['http']['status']);
                $this->assertSame(E_ERROR, $byPage['/fatal']['error']['type']);
                // Issue #20 §5: output had started, so the status is marked as possibly not the one sent.
                $this->assertTrue($byPage['/fatal']['http']['headers_sent']);
                $this->assertArrayNotHasKey('headers_sent', $byPage['/post']['http'], 'nothing went out before the end');
                $this->assertSame(404, $byPage['/nope']['http']['status']);
                $db = $byPage['/db']['sql']['queries'];
                $this->assertSame(['[REDACTED]' ], array_values($db[0]['params']));
                $this->assertSame(['bob', '[REDACTED]'], $db[2]['params'], 'a value inside md5(?) goes by its column');
                $this->assertSame([':p' => '[REDACTED]'], $db[3]['params'], 'a named value goes by its column');
                $this->assertSame("SELECT name FROM acct WHERE password = ?", $db[4]['sql'], 'literals are replaced');
                $this->assertSame('failed', $db[6]['status']);
                $this->assertStringContainsString('Key (password)=([REDACTED]) already exists', $db[6]['error']);
                $this->assertSame('cli-server', $byPage['/slow']['runtime']['sapi']);
                if ($label !== 'healthy') {
                    $this->assertSame('excimer', $byPage['/slow']['profile']['profiler']);
                    $this->assertGreaterThanOrEqual(3, $byPage['/slow']['profile']['total_samples'], "$label: a sampled profile");
                }
            }
            if ($label === 'spool full' || $label === 'broken config' || strpos($label, 'spool dir') !== false) {
                $this->assertSame([], $records, "$label: nothing may be written");
            }
            if ($label === 'tiny size cap') {
                foreach (glob($env['spool'] . '/*.ndjson') as $f) {
                    foreach (file($f) as $line) {
                        $this->assertLessThanOrEqual(4097, strlen($line));
                    }
                }
            }
        }
    }
}
