namespace SvdLlm.Models.Tests.Tokenizers;

/// <summary>Ids published by others, each with its source.</summary>
public sealed class PublishedExamplesTests
{
    [Fact]
    public void Gpt2_hello_world_is_31373_995()
    {
        // openai/tiktoken, tests/test_encoding.py test_simple: gpt2 encode("hello world") == [31373, 995]
        // and decode([31373, 995]) == "hello world".
        Assert.Equal([31373, 995], TestTokenizers.Gpt2.Encode("hello world"));
        Assert.Equal("hello world", TestTokenizers.Gpt2.Decode([31373, 995]));
    }

    [Fact]
    public void Gpt2_special_endoftext_is_recognised_inside_text()
    {
        // openai/tiktoken, tests/test_encoding.py test_simple:
        // gpt2 encode("hello <|endoftext|>", allowed_special="all") == [31373, 220, 50256].
        Assert.Equal([31373, 220, 50256], TestTokenizers.Gpt2.Encode("hello <|endoftext|>"));
    }

    [Fact]
    public void Gpt2_ids_and_sizes_match_its_config()
    {
        // Hugging Face openai-community/gpt2 config.json: vocab_size 50257, bos_token_id = eos_token_id = 50256.
        var gpt2 = TestTokenizers.Gpt2;
        Assert.Equal(50257, gpt2.VocabSize);
        Assert.Equal(50256, gpt2.BosTokenId);
        Assert.Equal(50256, gpt2.EosTokenId);
        Assert.Equal("<|endoftext|>", gpt2.IdToToken(50256));
        Assert.Empty(gpt2.SpecialPrefix); // GPT-2 adds no BOS
    }

    [Fact]
    public void Llama3_hello_world_is_cl100k_hello_world()
    {
        // Llama 3's 128k vocabulary starts with tiktoken's cl100k_base ranks (Meta: "100K tokens from
        // tiktoken + 28K additional"); openai/tiktoken tests/test_encoding.py test_simple:
        // cl100k_base encode("hello world") == [15339, 1917].
        Assert.Equal([15339, 1917], TestTokenizers.Llama3.Encode("hello world", addSpecialTokens: false));
    }

    [Fact]
    public void Llama3_special_token_ids()
    {
        // meta-llama/llama3 llama/tokenizer.py: special tokens numbered from 128000 in the order
        // begin_of_text, end_of_text, reserved_0..3, start_header_id, end_header_id, reserved_4, eot_id;
        // Meta-Llama-3-8B config.json: vocab_size 128256, bos_token_id 128000, eos_token_id 128001.
        var llama3 = TestTokenizers.Llama3;
        Assert.Equal([128000], llama3.Encode("<|begin_of_text|>", addSpecialTokens: false));
        Assert.Equal(128001, llama3.TokenToId("<|end_of_text|>"));
        Assert.Equal(128006, llama3.TokenToId("<|start_header_id|>"));
        Assert.Equal(128007, llama3.TokenToId("<|end_header_id|>"));
        Assert.Equal(128009, llama3.TokenToId("<|eot_id|>"));
        Assert.Equal(128256, llama3.VocabSize);
        Assert.Equal(128000, llama3.BosTokenId);
        Assert.Equal(128001, llama3.EosTokenId);
    }

    [Fact]
    public void Qwen_special_token_ids()
    {
        // Qwen2 tokenizer_config.json / Qwen docs ("Key Concepts"): <|endoftext|> 151643,
        // <|im_start|> 151644, <|im_end|> 151645; Qwen's tokenizer adds no BOS.
        var qwen = TestTokenizers.Qwen;
        Assert.Equal([151644, 151645, 151643], qwen.Encode("<|im_start|><|im_end|><|endoftext|>"));
        Assert.Null(qwen.BosTokenId);
        Assert.Equal(151645, qwen.EosTokenId);
        Assert.Empty(qwen.SpecialPrefix);
    }

    [Fact]
    public void Mistral_special_token_ids()
    {
        // mistralai/Mistral-7B-v0.1 config.json: bos_token_id 1, eos_token_id 2, vocab_size 32000;
        // tokenizer.json: <unk> 0, and the post-processor template "<s> $A".
        var mistral = TestTokenizers.Mistral;
        Assert.Equal(32000, mistral.VocabSize);
        Assert.Equal(1, mistral.BosTokenId);
        Assert.Equal(2, mistral.EosTokenId);
        Assert.Equal(0, mistral.TokenToId("<unk>"));
        Assert.Equal([1], mistral.SpecialPrefix);
        Assert.Equal([1], mistral.Encode(""));
        Assert.Empty(mistral.Encode("", addSpecialTokens: false));
    }
}
